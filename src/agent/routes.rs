//! The agent's endpoints: which method and path reach which handler, and their metrics
//! labels. `docs/openapi.yaml` describes the same set (a test keeps them equal).

use crate::http::ApiError;
use http::Method;

/// The agent's endpoints, relative to `agent.base_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRoute {
    /// `GET /login`: 302 to the provider.
    Login,
    /// `POST /login/start`: the authorization URL as JSON.
    LoginStart,
    /// `GET /callback`: the provider's redirect back.
    Callback,
    /// `GET /session`: who is logged in.
    Session,
    /// `GET /userinfo`: the provider's userinfo.
    UserInfo,
    /// `POST /refresh`: refresh the access token now.
    Refresh,
    /// `POST /logout`: end the session.
    Logout,
    /// `GET /logout/end`: the one-time link to the provider's end-session endpoint.
    LogoutEnd,
    /// `POST /backchannel-logout`: the provider ends sessions.
    BackchannelLogout,
    /// `GET /jwks.json`: the public `private_key_jwt` signing key (the provider fetches it).
    Jwks,
}

impl AgentRoute {
    /// Every endpoint with its method and path (relative to the base path).
    pub const ALL: [(AgentRoute, Method, &'static str); 10] = [
        (AgentRoute::Login, Method::GET, "/login"),
        (AgentRoute::LoginStart, Method::POST, "/login/start"),
        (AgentRoute::Callback, Method::GET, "/callback"),
        (AgentRoute::Session, Method::GET, "/session"),
        (AgentRoute::UserInfo, Method::GET, "/userinfo"),
        (AgentRoute::Refresh, Method::POST, "/refresh"),
        (AgentRoute::Logout, Method::POST, "/logout"),
        (AgentRoute::LogoutEnd, Method::GET, "/logout/end"),
        (
            AgentRoute::BackchannelLogout,
            Method::POST,
            "/backchannel-logout",
        ),
        (AgentRoute::Jwks, Method::GET, "/jwks.json"),
    ];

    /// The endpoint for a path under the base path (`HEAD` is served as `GET`).
    ///
    /// # Errors
    /// [`ApiError::MethodNotAllowed`] when the path exists with another method,
    /// [`ApiError::RouteNotFound`] when it does not exist.
    pub fn find(method: &Method, rest: &str) -> Result<AgentRoute, ApiError> {
        let mut path_known = false;
        for (route, m, p) in &Self::ALL {
            if *p == rest {
                let head_as_get = *m == Method::GET && *method == Method::HEAD;
                if m == method || head_as_get {
                    return Ok(*route);
                }
                path_known = true;
            }
        }
        Err(if path_known {
            ApiError::MethodNotAllowed("this endpoint does not take that method")
        } else {
            ApiError::RouteNotFound("no such agent endpoint")
        })
    }

    /// Whether the endpoint changes state for the browser's session (and so needs the
    /// CSRF check).
    pub fn changes_state(self) -> bool {
        matches!(
            self,
            AgentRoute::LoginStart | AgentRoute::Logout | AgentRoute::Refresh
        )
    }

    /// A bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            AgentRoute::Login => "agent_login",
            AgentRoute::LoginStart => "agent_login_start",
            AgentRoute::Callback => "agent_callback",
            AgentRoute::Session => "agent_session",
            AgentRoute::UserInfo => "agent_userinfo",
            AgentRoute::Refresh => "agent_refresh",
            AgentRoute::Logout => "agent_logout",
            AgentRoute::LogoutEnd => "agent_logout_end",
            AgentRoute::BackchannelLogout => "agent_backchannel_logout",
            AgentRoute::Jwks => "agent_jwks",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.yaml` lists exactly the endpoints [`AgentRoute::ALL`] serves.
    #[test]
    fn openapi_describes_every_endpoint_and_no_other() {
        let text = include_str!("../../docs/openapi.yaml");
        let doc: serde_yaml::Value = serde_yaml::from_str(text).expect("openapi.yaml parses");
        let paths = doc
            .get("paths")
            .and_then(|p| p.as_mapping())
            .expect("paths");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in paths {
            for (method, _) in ops.as_mapping().expect("operations") {
                documented.push((
                    method.as_str().expect("method").to_ascii_uppercase(),
                    path.as_str().expect("path").to_string(),
                ));
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> = AgentRoute::ALL
            .iter()
            .map(|(_, m, p)| (m.to_string(), (*p).to_string()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn routes_resolve_by_method_and_path() {
        assert_eq!(
            AgentRoute::find(&Method::GET, "/session"),
            Ok(AgentRoute::Session)
        );
        assert_eq!(
            AgentRoute::find(&Method::HEAD, "/session"),
            Ok(AgentRoute::Session)
        );
        assert_eq!(
            AgentRoute::find(&Method::GET, "/logout").map_err(ApiError::code),
            Err("method_not_allowed")
        );
        assert_eq!(
            AgentRoute::find(&Method::GET, "/nope").map_err(ApiError::code),
            Err("route_not_found")
        );
    }
}
