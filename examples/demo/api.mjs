// Example API behind bffgate. It trusts no cookie: every call must carry the bearer token
// bffgate forwards, which it verifies by introspection at the OpenID provider. It answers
// with who the token belongs to, and never echoes the token itself.
//
//   PORT=3002 ISSUER=http://127.0.0.1:9000 CLIENT_ID=bff CLIENT_SECRET=... node api.mjs
import http from 'node:http';

const port = Number(process.env.PORT ?? 3002);
const issuer = process.env.ISSUER ?? 'http://127.0.0.1:9000';
const clientId = process.env.CLIENT_ID ?? 'bff';
const clientSecret = process.env.CLIENT_SECRET ?? '';
let introspectionEndpoint;

async function introspect(token) {
  if (!introspectionEndpoint) {
    const meta = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
    introspectionEndpoint = meta.introspection_endpoint;
  }
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
  const r = await fetch(introspectionEndpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }),
  });
  return r.ok ? r.json() : { active: false };
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

http.createServer(async (req, res) => {
  const auth = req.headers.authorization ?? '';
  if (!auth.startsWith('Bearer ')) return send(res, 401, { code: 'no_token', message: 'no bearer token' });
  try {
    const info = await introspect(auth.slice(7));
    if (!info.active) return send(res, 401, { code: 'invalid_token', message: 'the token is not active' });
    send(res, 200, {
      message: `Hello, ${info.sub}! This came from the example API.`,
      sub: info.sub,
      scope: info.scope,
      token_verified: true,
      path: req.url,
      // Proof for the demo that no cookie of ours reached the API:
      cookie_header_seen: req.headers.cookie ?? null,
    });
  } catch (e) {
    send(res, 502, { code: 'introspection_failed', message: String(e.message ?? e) });
  }
}).listen(port, '127.0.0.1', () => console.log(`example API on http://127.0.0.1:${port}`));
