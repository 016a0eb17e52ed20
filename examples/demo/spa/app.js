// The demo SPA: every call goes to bffgate with `credentials: 'include'`; the browser adds
// the session cookie, bffgate adds the token. Unsafe calls carry the CSRF header.
const BFF = window.BFFGATE_URL || 'http://localhost:8080';
const $ = (id) => document.getElementById(id);

async function bff(path, options = {}) {
  const unsafe = options.method && options.method !== 'GET';
  const headers = { ...(options.headers || {}), ...(unsafe ? { 'x-bffgate-csrf': '1' } : {}) };
  return fetch(BFF + path, { ...options, headers, credentials: 'include' });
}

async function showSession() {
  const r = await bff('/bff/session');
  const s = await r.json();
  if (s.authenticated) {
    const name = (s.claims && (s.claims.name || s.claims.email)) || s.sub;
    $('status').textContent = `Logged in as ${name}`;
    $('status').dataset.user = s.sub;
  } else {
    $('status').textContent = 'Not logged in';
    delete $('status').dataset.user;
  }
  $('login').hidden = s.authenticated;
  $('logout').hidden = !s.authenticated;
}

$('login').onclick = () => {
  location.href = `${BFF}/bff/login?return_to=${encodeURIComponent(location.origin + '/')}`;
};

$('logout').onclick = async () => {
  const r = await bff('/bff/logout', { method: 'POST' });
  const { logout_url } = await r.json();
  if (logout_url) location.href = logout_url;
  else await showSession();
};

$('call').onclick = async () => {
  const r = await bff('/api/hello?from=spa');
  const body = await r.json();
  $('result').dataset.status = String(r.status);
  $('result').textContent = r.status === 401
    ? `401 ${body.code}: ${body.message}. Log in again.`
    : JSON.stringify(body, null, 2);
  if (r.status === 401) await showSession();
};

const err = new URLSearchParams(location.search).get('login_error');
if (err) {
  $('error').textContent = `Login failed: ${err}`;
  $('error').hidden = false;
}
showSession().catch((e) => { $('status').textContent = `bffgate unreachable: ${e.message}`; });
