// A real OpenID Provider (panva/oidc-provider) for bffgate's integration tests.
//
//   node tests/provider/provider.mjs '<settings JSON>'
//   BFFGATE_PROVIDER_SETTINGS='<settings JSON>' node tests/provider/provider.mjs
//
// Settings are documented in README.md next to this file. Once listening, the
// script prints exactly one line to stdout: `READY <base url>` (the URL it
// listens on, `http://127.0.0.1:<port>`, which is also the issuer unless the
// `issuer` setting overrides it). Everything else goes to stderr. SIGTERM and
// SIGINT shut it down cleanly (persisting its state when `state_dir` is set).

import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';

// oidc-provider prints NOTICEs with console.info (stdout); stdout belongs to
// the READY line alone.
console.log = console.error;
console.info = console.error;

const { default: Provider, errors } = await import('oidc-provider');

// ---------------------------------------------------------------- settings

function loadSettings() {
  const raw = process.argv[2] ?? process.env.BFFGATE_PROVIDER_SETTINGS ?? '{}';
  const text = raw.startsWith('@') ? fs.readFileSync(raw.slice(1), 'utf8') : raw;
  const s = JSON.parse(text);
  const client = s.client ?? {};
  return {
    host: s.host ?? '127.0.0.1',
    port: Number(s.port ?? 0),
    issuer: s.issuer ?? null,
    // {cert, key}: PEM file paths; the provider then speaks HTTPS (for private-CA tests).
    tls: s.tls ?? null,
    stateDir: s.state_dir ?? null,
    accessTokenTtl: Number(s.access_token_ttl ?? 60),
    idTokenTtl: Number(s.id_token_ttl ?? 3600),
    refreshTokenTtl: Number(s.refresh_token_ttl ?? 24 * 3600),
    authorizationCodeTtl: Number(s.authorization_code_ttl ?? 60),
    sessionTtl: Number(s.session_ttl ?? 24 * 3600),
    rotateRefreshToken: s.rotate_refresh_token ?? true,
    tokensExpireWithSession: s.tokens_expire_with_session ?? false,
    conformIdTokenClaims: s.conform_id_token_claims ?? false,
    strictClientAuth: s.strict_client_auth ?? true,
    reportRefreshExpiresIn: s.report_refresh_expires_in ?? false,
    pushedAuthorizationRequests: s.pushed_authorization_requests ?? false,
    // Resource servers (RFC 8707) by resource indicator -> the scopes they accept. When
    // set, our client may also use client_credentials and token exchange (RFC 8693), and
    // tokens for a resource are JWTs whose `aud` is the resource.
    resourceServers: s.resource_servers ?? null,
    // DPoP (RFC 9449) nonces: when true, every DPoP proof must carry the provider's current
    // nonce (a first proof without one gets `use_dpop_nonce` and a `DPoP-Nonce`).
    dpopRequireNonce: s.dpop_require_nonce ?? false,
    client: {
      client_id: client.client_id ?? 'bffgate',
      client_secret: client.client_secret ?? 'bffgate-test-secret',
      redirect_uris: client.redirect_uris ?? ['http://127.0.0.1/bff/callback'],
      post_logout_redirect_uris: client.post_logout_redirect_uris ?? [],
      token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
      backchannel_logout_uri: client.backchannel_logout_uri ?? null,
    },
    users: s.users ?? [
      {
        login: 'alice',
        password: 'wonderland',
        claims: {
          sub: 'alice', name: 'Alice Liddell', email: 'alice@example.com', email_verified: true,
        },
      },
    ],
  };
}

const settings = loadSettings();

// ---------------------------------------------------------------- keys

// A fresh RS256 signing key as a private JWK. The key is made by the `openssl` command,
// not `generateKeyPairSync`: on Node 20 a garbage collection that finalizes the key
// generation job while the key is being exported takes the key's lock twice and hangs
// the process (seen about once in 75 starts on a loaded 2-core machine).
function newSigningJwk() {
  const pem = execFileSync(
    'openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return {
    ...createPrivateKey(pem).export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig',
  };
}

// Signing key and cookie keys: fresh per run, unless `state_dir` already holds
// the ones a previous run (same test, before a restart) wrote.
function loadOrCreateKeys() {
  const file = settings.stateDir && path.join(settings.stateDir, 'keys.json');
  if (file && fs.existsSync(file)) {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  }
  const jwk = newSigningJwk();
  const keys = { jwks: { keys: [jwk] }, cookieKeys: [randomBytes(32).toString('base64url')] };
  if (file) {
    fs.mkdirSync(settings.stateDir, { recursive: true });
    fs.writeFileSync(file, JSON.stringify(keys), { mode: 0o600 });
  }
  return keys;
}

const keys = loadOrCreateKeys();

// A new signing key replacing the current one, written where the next start (after a
// restart) reads it. Cookie keys are kept.
function rotateSigningKey() {
  const jwk = newSigningJwk();
  const next = { jwks: { keys: [jwk] }, cookieKeys: keys.cookieKeys };
  if (settings.stateDir) {
    fs.writeFileSync(path.join(settings.stateDir, 'keys.json'), JSON.stringify(next), { mode: 0o600 });
  }
  return jwk.kid;
}

// A fault the token endpoint answers with instead of doing its work (POST /__faults):
// `{status, error, delay_ms}`; null for none.
let tokenFault = null;
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// ---------------------------------------------------------------- storage

// In-memory adapter (same semantics as oidc-provider's MemoryAdapter) that can
// be enumerated (for /__backchannel_logout) and persisted across a restart.
const store = new Map(); // key -> { payload, exp (ms epoch) | null }
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode']);
const storeFile = settings.stateDir && path.join(settings.stateDir, 'store.json');

function sget(key) {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.exp !== null && e.exp <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return e.payload;
}
function sset(key, payload, expiresIn) {
  store.set(key, { payload, exp: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null });
}

class Adapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    if (this.model === 'Session') sset(`sessionUid:${payload.uid}`, id, expiresIn);
    if (payload.userCode) sset(`userCode:${payload.userCode}`, id, expiresIn);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      const gk = `grant:${payload.grantId}`;
      const members = sget(gk) ?? [];
      if (!members.includes(key)) members.push(key);
      sset(gk, members, settings.refreshTokenTtl + settings.sessionTtl);
    }
    sset(key, payload, expiresIn);
  }

  async find(id) { return sget(this.key(id)); }

  async findByUid(uid) {
    const id = sget(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = sget(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const p = sget(this.key(id));
    if (p) p.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    const key = this.key(id);
    const p = sget(key);
    if (p?.uid && this.model === 'Session') store.delete(`sessionUid:${p.uid}`);
    store.delete(key);
  }

  async revokeByGrantId(grantId) {
    const gk = `grant:${grantId}`;
    for (const key of sget(gk) ?? []) store.delete(key);
    store.delete(gk);
  }
}

function loadStore() {
  if (!storeFile || !fs.existsSync(storeFile)) return;
  const now = Date.now();
  for (const [k, e] of JSON.parse(fs.readFileSync(storeFile, 'utf8'))) {
    if (e.exp === null || e.exp > now) store.set(k, e);
  }
}
function saveStore() {
  if (!storeFile) return;
  fs.mkdirSync(settings.stateDir, { recursive: true });
  fs.writeFileSync(`${storeFile}.tmp`, JSON.stringify([...store.entries()]), { mode: 0o600 });
  fs.renameSync(`${storeFile}.tmp`, storeFile);
}
loadStore();

// ---------------------------------------------------------------- accounts

const users = new Map(settings.users.map((u) => [u.login, u]));
const accountsBySub = new Map(settings.users.map((u) => [u.claims?.sub ?? u.login, u]));

function findAccount(_ctx, sub) {
  const user = accountsBySub.get(sub);
  if (!user) return undefined;
  return {
    accountId: sub,
    async claims() { return { ...user.claims, sub }; },
  };
}

// ---------------------------------------------------------------- stats

const stats = {
  grants: {}, // grant_type -> successful token endpoint responses
  grant_errors: {}, // error code -> token endpoint failures
  resource_grants: {}, // "<grant_type> <resource>" -> successful grants for one resource
  refresh_token_reuse: 0, // rotated-out refresh token presented again
  authorization_code_reuse: 0, // authorization code presented twice
  authorizations: 0, // authorization endpoint successes (code issued)
  authorization_errors: {},
  logins: { success: 0, failure: 0 },
  userinfo: { success: 0, error: 0 },
  introspection: 0,
  revocation: 0,
  end_session: 0,
  backchannel_logout: { success: 0, error: 0, errors: [] },
  client_auth_mismatch: 0, // basic used by a post client, or the reverse
  server_errors: 0,
  token_faults: 0, // token endpoint requests answered with the injected fault
  jwks: 0, // GET /jwks
  dpop_grants: 0, // token responses to a request carrying a DPoP proof
};
const CLIENT_AUTH_PATHS = new Set(['/token', '/token/introspection', '/token/revocation', '/request']);
const inc = (obj, k) => { obj[k] = (obj[k] ?? 0) + 1; };

// ---------------------------------------------------------------- provider

const server = settings.tls
  ? https.createServer({
    cert: fs.readFileSync(settings.tls.cert),
    key: fs.readFileSync(settings.tls.key),
  })
  : http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(settings.port, settings.host, resolve);
});
const { port } = server.address();
const scheme = settings.tls ? 'https' : 'http';
const baseUrl = `${scheme}://${settings.host.includes(':') ? `[${settings.host}]` : settings.host}:${port}`;
const issuer = settings.issuer ?? baseUrl;
const ourClient = settings.client.client_id;

const clientMetadata = {
  client_id: ourClient,
  client_secret: settings.client.client_secret,
  redirect_uris: settings.client.redirect_uris,
  post_logout_redirect_uris: settings.client.post_logout_redirect_uris,
  token_endpoint_auth_method: settings.client.token_endpoint_auth_method,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  id_token_signed_response_alg: 'RS256',
};
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
if (settings.resourceServers) {
  clientMetadata.grant_types.push('client_credentials', TOKEN_EXCHANGE);
}
if (settings.client.backchannel_logout_uri) {
  clientMetadata.backchannel_logout_uri = settings.client.backchannel_logout_uri;
  clientMetadata.backchannel_logout_session_required = true;
}

function htmlEscape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// The client lives in the store rather than in `clients` so that /__client can
// change it at run time (oidc-provider re-reads stored clients on every lookup).
const provider = new Provider(issuer, {
  adapter: Adapter,
  responseTypes: ['code'],
  jwks: keys.jwks,
  cookies: { keys: keys.cookieKeys },
  findAccount,
  claims: {
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
  },
  conformIdTokenClaims: settings.conformIdTokenClaims,
  pkce: {
    // PKCE (S256 is the only method oidc-provider 9 supports) is mandatory.
    required: () => true,
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // The confirmation page: one form, logout=yes pre-filled, so a test
      // driver can submit it as is.
      async logoutSource(ctx, form) {
        const yes = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/><button type="submit">Sign out</button></form>');
        ctx.body = `<!DOCTYPE html><html><head><title>Logout</title></head><body>${yes}</body></html>`;
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = '<!DOCTYPE html><html><head><title>Signed out</title></head><body>Signed out</body></html>';
      },
    },
    backchannelLogout: { enabled: true },
    // PAR (RFC 9126): off unless asked for, so discovery names no
    // pushed_authorization_request_endpoint by default (oidc-provider's own default is on).
    pushedAuthorizationRequests: { enabled: settings.pushedAuthorizationRequests === true },
    clientCredentials: { enabled: Boolean(settings.resourceServers) },
    dPoP: {
      enabled: true,
      nonceSecret: settings.dpopRequireNonce ? randomBytes(32) : undefined,
      requireNonce: () => settings.dpopRequireNonce === true,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => false,
      getResourceServerInfo: (_ctx, resource) => resourceServerInfo(resource),
    },
  },
  // oidc-provider drops `offline_access` unless prompt=consent; issue refresh
  // tokens to our client whenever it may use the refresh_token grant instead.
  issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  // Without offline_access, tokens would die with the OP browser session by
  // default; make that a setting (default: they don't, like offline access).
  expiresWithSession(_ctx, token) {
    return settings.tokensExpireWithSession === true && !token.scopes.has('offline_access');
  },
  rotateRefreshToken: settings.rotateRefreshToken === true,
  ttl: {
    AccessToken: settings.accessTokenTtl,
    AuthorizationCode: settings.authorizationCodeTtl,
    IdToken: settings.idTokenTtl,
    RefreshToken: settings.refreshTokenTtl,
    Interaction: 600,
    Session: settings.sessionTtl,
    Grant: settings.refreshTokenTtl + settings.sessionTtl,
    ClientCredentials: 600,
    DeviceCode: 600,
    BackchannelAuthenticationRequest: 600,
    PreAuthorizedCode: 600,
  },
  // Consent is implicit for our client: the grant covers whatever it asks.
  async loadExistingGrant(ctx) {
    const { client, session } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
    if (client.clientId !== ourClient) return grant;
    if (!grant) {
      grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    }
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    const claims = [...ctx.oidc.requestParamClaims];
    if (claims.length) grant.addOIDCClaims(claims);
    await grant.save();
    return grant;
  },
  interactions: {
    url(_ctx, interaction) { return `/interaction/${interaction.uid}`; },
  },
  // oidc-provider refuses outgoing requests (back-channel logout) to
  // special-use addresses such as 127.0.0.1 by handing `fetch` an SSRF-guarding
  // undici dispatcher. Tests only ever talk to loopback: drop the guard.
  fetch(url, options) {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>oops</title></head><body><h1>${htmlEscape(out.error)}</h1><p>${htmlEscape(out.error_description ?? '')}</p></body></html>`;
  },
});

// ------------------------------------------------------ token exchange (RFC 8693)

// The resource server a resource indicator names: its scopes, and JWT access tokens whose
// `aud` is the resource (so a test can see which resource a token was made for).
function resourceServerInfo(resource) {
  const scope = settings.resourceServers?.[resource];
  if (scope === undefined) throw new errors.InvalidTarget('unknown resource indicator');
  return {
    scope,
    audience: resource,
    accessTokenFormat: 'jwt',
    accessTokenTTL: settings.accessTokenTtl,
    jwt: { sign: { alg: 'RS256' } },
  };
}

// Exchanges one of our client's opaque user access tokens for a token of one resource,
// for the same user and grant: what an upstream API behind the BFF would be given.
async function tokenExchange(ctx) {
  const { params, client, provider: op } = ctx.oidc;
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('subject_token_type must be an access token');
  }
  const subject = await op.AccessToken.find(params.subject_token);
  if (!subject || subject.isExpired) throw new errors.InvalidGrant('subject token is invalid or expired');
  if (subject.clientId !== client.clientId) throw new errors.InvalidGrant('subject token belongs to another client');
  if (typeof params.resource !== 'string') throw new errors.InvalidTarget('exactly one resource is required');
  const info = resourceServerInfo(params.resource);
  const allowed = new Set(info.scope.split(' '));
  const requested = params.scope ? params.scope.split(' ') : [...allowed];
  const scope = requested.filter((s) => allowed.has(s)).join(' ') || undefined;
  const token = new op.AccessToken({
    accountId: subject.accountId,
    client,
    grantId: subject.grantId,
    gty: 'token_exchange',
    scope,
  });
  token.resourceServer = new op.ResourceServer(params.resource, info);
  const value = await token.save();
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: token.expiration,
    scope,
  };
}
provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange, [
  'subject_token', 'subject_token_type', 'requested_token_type', 'resource', 'scope',
]);

await provider.Client.validate(clientMetadata);
await new Adapter('Client').upsert(ourClient, clientMetadata);

provider.on('grant.success', (ctx) => {
  inc(stats.grants, ctx.oidc.params.grant_type);
  const { resource } = ctx.oidc.params;
  if (typeof resource === 'string') inc(stats.resource_grants, `${ctx.oidc.params.grant_type} ${resource}`);
});
provider.on('grant.error', (ctx, err) => {
  inc(stats.grant_errors, err.error ?? 'unknown');
  if (err.error_detail === 'refresh token already used') stats.refresh_token_reuse += 1;
  if (err.error_detail === 'authorization code already consumed') stats.authorization_code_reuse += 1;
});
provider.on('authorization.success', () => { stats.authorizations += 1; });
provider.on('grant.success', (ctx) => { if (ctx.get('dpop')) stats.dpop_grants += 1; });
provider.on('authorization.error', (_ctx, err) => inc(stats.authorization_errors, err.error ?? 'unknown'));
provider.on('userinfo.error', () => { stats.userinfo.error += 1; });
provider.on('end_session.success', () => { stats.end_session += 1; });
provider.on('backchannel.success', () => { stats.backchannel_logout.success += 1; });
provider.on('backchannel.error', (_ctx, err) => {
  stats.backchannel_logout.error += 1;
  stats.backchannel_logout.errors.push(String(err?.message ?? err));
});
provider.on('server_error', (ctx, err) => {
  stats.server_errors += 1;
  console.error(`server_error ${ctx.method} ${ctx.path}:`, err);
});

// ---------------------------------------------------------------- routes

async function readForm(ctx) {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  const body = Buffer.concat(chunks).toString('utf8');
  if ((ctx.get('content-type') || '').includes('application/json')) {
    return body ? JSON.parse(body) : {};
  }
  return Object.fromEntries(new URLSearchParams(body));
}

function loginPage(uid, error) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
${error ? `<p class="error">${htmlEscape(error)}</p>` : ''}
<form method="post" action="/interaction/${htmlEscape(uid)}/login" autocomplete="off">
<input type="hidden" name="uid" value="${htmlEscape(uid)}"/>
<label>Login <input type="text" name="login" autofocus/></label>
<label>Password <input type="password" name="password"/></label>
<button type="submit">Sign in</button>
</form>
</body></html>`;
}

// Grants every scope and claim the interaction is missing (consent prompt).
async function autoConsent(details) {
  const { prompt: { details: missing }, params, session } = details;
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (!grant) grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

async function backchannelLogoutAccount(account, revokeGrants) {
  const sessions = [];
  for (const [key, e] of store) {
    if (key.startsWith('Session:') && e.payload.accountId === account
        && (e.exp === null || e.exp > Date.now())) {
      sessions.push([key.slice('Session:'.length), e.payload]);
    }
  }
  const result = { sessions: sessions.length, sent: 0, errors: [] };
  for (const [id, session] of sessions) {
    for (const [clientId, auth] of Object.entries(session.authorizations ?? {})) {
      const client = await provider.Client.find(clientId);
      if (client?.backchannelLogoutUri) {
        try {
          await client.backchannelLogout(account, auth.sid);
          stats.backchannel_logout.success += 1;
          result.sent += 1;
        } catch (err) {
          stats.backchannel_logout.error += 1;
          stats.backchannel_logout.errors.push(String(err?.message ?? err));
          result.errors.push(String(err?.message ?? err));
        }
      }
      if (revokeGrants && auth.grantId) {
        await Promise.all([provider.AccessToken, provider.RefreshToken, provider.AuthorizationCode]
          .map((m) => m.adapter.revokeByGrantId(auth.grantId)));
        await provider.Grant.adapter.destroy(auth.grantId);
      }
    }
    await provider.Session.adapter.destroy(id);
  }
  return result;
}

provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (m) {
    const [, uid, login] = m;
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><h1>interaction error</h1><p>${htmlEscape(err.message)}</p></body></html>`;
      return;
    }
    if (details.uid !== uid) {
      ctx.status = 400;
      ctx.body = 'interaction mismatch';
      return;
    }
    ctx.set('cache-control', 'no-store');
    if (details.prompt.name === 'consent') {
      const grantId = await autoConsent(details);
      const returnTo = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      ctx.status = 303;
      ctx.redirect(returnTo);
      return;
    }
    if (details.prompt.name !== 'login') {
      ctx.status = 400;
      ctx.body = `unsupported prompt ${details.prompt.name}`;
      return;
    }
    if (!login && ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = loginPage(uid);
      return;
    }
    if (login && ctx.method === 'POST') {
      const form = await readForm(ctx);
      const user = users.get(form.login);
      if (!user || typeof form.password !== 'string' || form.password !== user.password) {
        stats.logins.failure += 1;
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = loginPage(uid, 'Invalid login or password.');
        return;
      }
      stats.logins.success += 1;
      const accountId = user.claims?.sub ?? user.login;
      const returnTo = await provider.interactionResult(ctx.req, ctx.res, {
        login: { accountId, amr: ['pwd'] },
      }, { mergeWithLastSubmission: false });
      ctx.status = 303;
      ctx.redirect(returnTo);
      return;
    }
    ctx.status = 405;
    return;
  }

  if (ctx.path === '/__stats' && ctx.method === 'GET') {
    ctx.set('cache-control', 'no-store');
    ctx.body = stats;
    return;
  }
  if (ctx.path === '/__client' && ctx.method === 'POST') {
    const patch = await readForm(ctx);
    const merged = { ...(await new Adapter('Client').find(ourClient)), ...patch, client_id: ourClient };
    // A null removes the field (e.g. `jwks_uri` when switching to inline `jwks`).
    for (const [k, v] of Object.entries(patch)) if (v === null) delete merged[k];
    if (merged.backchannel_logout_uri) merged.backchannel_logout_session_required = true;
    else {
      delete merged.backchannel_logout_uri;
      delete merged.backchannel_logout_session_required;
    }
    try {
      await provider.Client.validate(merged);
    } catch (err) {
      ctx.status = 400;
      ctx.body = { error: err.error ?? 'invalid_client_metadata', error_description: err.error_description ?? err.message };
      return;
    }
    await new Adapter('Client').upsert(ourClient, merged);
    ctx.body = merged;
    return;
  }
  if (ctx.path === '/__faults' && ctx.method === 'POST') {
    const body = await readForm(ctx);
    tokenFault = body.token ?? null;
    ctx.body = { token: tokenFault };
    return;
  }
  if (ctx.path === '/__rotate_keys' && ctx.method === 'POST') {
    ctx.body = { kid: rotateSigningKey(), applies: 'after a restart' };
    return;
  }
  if (ctx.path === '/jwks') stats.jwks += 1;
  if (tokenFault && ctx.path === '/token' && ctx.method === 'POST') {
    const fault = tokenFault;
    stats.token_faults += 1;
    if (fault.delay_ms) await sleep(Number(fault.delay_ms));
    ctx.status = Number(fault.status ?? 503);
    ctx.set('cache-control', 'no-store');
    ctx.body = { error: fault.error ?? 'temporarily_unavailable' };
    return;
  }
  if (ctx.path === '/__backchannel_logout' && ctx.method === 'POST') {
    const body = await readForm(ctx);
    const account = body.account ?? body.sub;
    if (!account) {
      ctx.status = 400;
      ctx.body = { error: 'account is required' };
      return;
    }
    ctx.body = await backchannelLogoutAccount(account, body.revoke_grants !== false && body.revoke_grants !== 'false');
    return;
  }

  // oidc-provider accepts client_secret_basic and client_secret_post
  // interchangeably whatever the client registered; tests want the registered
  // method enforced. Both checks look at the header only (the body stays
  // unread for oidc-provider).
  if (settings.strictClientAuth && ctx.method === 'POST' && CLIENT_AUTH_PATHS.has(ctx.path)) {
    const { token_endpoint_auth_method: method } = await new Adapter('Client').find(ourClient);
    const basic = /^basic /i.test(ctx.get('authorization'));
    if ((method === 'client_secret_post' && basic) || (method === 'client_secret_basic' && !basic)) {
      stats.client_auth_mismatch += 1;
      if (ctx.path === '/token') inc(stats.grant_errors, 'invalid_client');
      ctx.status = 401;
      ctx.set('cache-control', 'no-store');
      ctx.body = {
        error: 'invalid_client',
        error_description: `client authentication failed (expected ${method})`,
      };
      return;
    }
  }

  await next();
  // Keycloak-style `refresh_expires_in` in token responses, when asked for.
  if (settings.reportRefreshExpiresIn && ctx.path === '/token' && ctx.status === 200
      && ctx.body && typeof ctx.body === 'object' && ctx.body.refresh_token) {
    ctx.body.refresh_expires_in = settings.refreshTokenTtl;
  }
  // Count successes of routes that emit no success event of their own.
  if (ctx.status < 400) {
    const route = ctx.oidc?.route;
    if (route === 'userinfo') stats.userinfo.success += 1;
    else if (route === 'introspection') stats.introspection += 1;
    else if (route === 'revocation') stats.revocation += 1;
  }
});

server.on('request', provider.callback());

// ---------------------------------------------------------------- lifecycle

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  try {
    saveStore();
  } catch (err) {
    console.error('failed to persist state:', err);
  }
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
  console.error(`provider: ${signal}, shutting down`);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
// The test harness holds our stdin; its EOF means the harness went away.
if (process.env.BFFGATE_PROVIDER_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => shutdown('stdin EOF'));
  process.stdin.resume();
}

process.stdout.write(`READY ${baseUrl}\n`);
