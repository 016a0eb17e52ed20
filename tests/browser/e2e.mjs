// The real-browser end-to-end test: Debian's Chromium, headless, driven by playwright-core
// through the demo SPA, bffgate and the real OpenID provider. Started (with every server
// already running) by `tests/browser_e2e.rs`; it can also be run by hand against
// `bash scripts/run.sh`:
//
//   E2E_SPA_URL=http://localhost:3000 E2E_BFF_URL=http://localhost:8080 \
//   E2E_OP_URL=http://127.0.0.1:9000 node tests/browser/e2e.mjs
//
// Environment:
//   E2E_SPA_URL    the SPA's origin (http://localhost:PORT)                       required
//   E2E_BFF_URL    bffgate's origin (http://localhost:PORT)                       required
//   E2E_OP_URL     the OpenID provider's origin (the issuer)                      required
//   E2E_OUT_DIR    screenshots and records.json                default target/browser-e2e
//   E2E_CHROMIUM   the browser                                 default /usr/bin/chromium
//   E2E_USER / E2E_PASSWORD                                    default alice / wonderland
//   E2E_EXPECT_NAME  the name the SPA shows after login        default Alice Liddell
//   E2E_SECURE_COOKIE  "0" if bffgate runs with cookie.secure: false      default 1
//
// Exit status 0 when every step passed; 1 on the first failed step (with the page's URL,
// #status, #result, console messages and a screenshot `failure.png`); 2 on a bad setup;
// 3 when the whole run takes longer than 85 s.
//
// What it writes to E2E_OUT_DIR/records.json (for the Rust test's token checks): every
// request URL the browser made, every response (URL, status, type, body text when the
// browser had one), the pages' document.cookie and Web Storage, and the context's cookies.
import { chromium } from 'playwright-core';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const started = Date.now();
const TOTAL_BUDGET_MS = 85_000;
const STEP_TIMEOUT_MS = 15_000;

function env(name, fallback) {
  const v = process.env[name];
  if (v !== undefined && v !== '') return v;
  if (fallback === undefined) {
    console.error(`e2e: setup: environment variable ${name} is required`);
    process.exit(2);
  }
  return fallback;
}

const SPA = env('E2E_SPA_URL').replace(/\/$/, '');
const BFF = env('E2E_BFF_URL').replace(/\/$/, '');
const OP = env('E2E_OP_URL').replace(/\/$/, '');
const OUT = path.resolve(env('E2E_OUT_DIR', 'target/browser-e2e'));
const CHROMIUM = env('E2E_CHROMIUM', '/usr/bin/chromium');
const USER = env('E2E_USER', 'alice');
const PASSWORD = env('E2E_PASSWORD', 'wonderland');
const EXPECT_NAME = env('E2E_EXPECT_NAME', 'Alice Liddell');
const SECURE_COOKIE = env('E2E_SECURE_COOKIE', '1') !== '0';
const COOKIE = 'bff_session';

if (!existsSync(CHROMIUM)) {
  console.error(`e2e: setup: no browser at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium; scripts/test.sh does)`);
  process.exit(2);
}
mkdirSync(OUT, { recursive: true });

const log = (...a) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s]`, ...a);

// ------------------------------------------------------------------------ recording

const records = { requests: [], responses: [], fetchBodies: [], documentCookies: [], storage: [], cookies: [] };
const pendingBodies = [];
const consoleLines = [];

async function watch(context) {
  // Fetch answers as the page's own script receives them: a fetch body is gone from the
  // browser's network cache once the page navigates away (as the SPA does right after
  // POST /bff/logout), so the page hands each body over before the SPA sees it.
  await context.exposeBinding('__e2eRecordFetch', (_source, entry) => {
    records.fetchBodies.push(entry);
  });
  await context.addInitScript(() => {
    const original = window.fetch;
    window.fetch = async function recordedFetch(input, init) {
      const response = await original.call(this, input, init);
      try {
        const body = await response.clone().text();
        window.__e2eRecordFetch({
          url: response.url,
          method: (init && init.method) || 'GET',
          status: response.status,
          type: 'fetch',
          body,
        });
      } catch {
        // an opaque or aborted answer: nothing to record
      }
      return response;
    };
  });
  context.on('request', (req) => {
    records.requests.push({ url: req.url(), method: req.method(), type: req.resourceType() });
  });
  context.on('response', (res) => {
    const type = res.request().resourceType();
    const entry = {
      url: res.url(),
      method: res.request().method(),
      status: res.status(),
      type,
      location: res.headers().location ?? null,
      body: null,
    };
    records.responses.push(entry);
    if (res.status() >= 300 && res.status() < 400) return; // no body for redirects
    if (!['document', 'fetch', 'xhr', 'script'].includes(type)) return;
    pendingBodies.push(
      res.text().then((t) => { entry.body = t; }, (e) => { entry.body_error = String(e.message ?? e).split('\n')[0]; }),
    );
  });
  context.on('page', (page) => {
    page.on('console', (m) => consoleLines.push(`[console.${m.type()}] ${page.url()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${page.url()}: ${e.message}`));
  });
}

// ------------------------------------------------------------------------ steps

let browser;
let context;
let currentPage;
let stepNo = 0;

class StepFailure extends Error {}

function fail(message) {
  throw new StepFailure(message);
}

function check(cond, message) {
  if (!cond) fail(message);
}

async function step(name, fn) {
  stepNo += 1;
  const t = Date.now();
  log(`step ${stepNo}: ${name}`);
  await fn();
  log(`  ok (${Date.now() - t} ms)`);
}

async function statusText(page) {
  return (await page.locator('#status').textContent({ timeout: 2000 }).catch(() => null))?.trim();
}

/** Waits until #status shows exactly `text`. */
async function waitForStatus(page, text) {
  try {
    await page.waitForFunction(
      (want) => document.getElementById('status')?.textContent.trim() === want,
      text,
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch {
    fail(`#status never became ${JSON.stringify(text)}; it is ${JSON.stringify(await statusText(page))} on ${page.url()}`);
  }
}

/** Clicks "Call the API" and returns {status, text} once #result has a new data-status. */
async function callApi(page) {
  await page.evaluate(() => {
    const r = document.getElementById('result');
    delete r.dataset.status;
    r.textContent = '(calling)';
  });
  await page.click('#call');
  try {
    await page.waitForSelector('#result[data-status]', { timeout: STEP_TIMEOUT_MS });
  } catch {
    fail(`#result got no data-status after clicking #call; #result is ${JSON.stringify(await page.locator('#result').textContent())}`);
  }
  const status = Number(await page.getAttribute('#result', 'data-status'));
  const text = (await page.locator('#result').textContent()).trim();
  return { status, text };
}

function expectApiOk({ status, text }, where) {
  check(status === 200, `${where}: the API call returned ${status}: ${text}`);
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    fail(`${where}: #result is not the API's JSON: ${text}`);
  }
  check(body.token_verified === true, `${where}: token_verified is not true: ${text}`);
  check(body.sub === USER, `${where}: sub is ${JSON.stringify(body.sub)}, expected ${USER}: ${text}`);
  check(
    !String(body.cookie_header_seen ?? '').includes(COOKIE),
    `${where}: the API received bffgate's session cookie: ${body.cookie_header_seen}`,
  );
  return body;
}

async function bffCookie() {
  const all = await context.cookies(BFF);
  return all.find((c) => c.name === COOKIE);
}

/** document.cookie and Web Storage of a page, recorded and checked for the session cookie. */
async function checkPageSecrets(page, where) {
  const seen = await page.evaluate(() => {
    const dump = (s) => Object.fromEntries(Array.from({ length: s.length }, (_, i) => [s.key(i), s.getItem(s.key(i))]));
    return { cookie: document.cookie, local: dump(localStorage), session: dump(sessionStorage) };
  });
  records.documentCookies.push({ where, url: page.url(), cookie: seen.cookie });
  records.storage.push({ where, url: page.url(), localStorage: seen.local, sessionStorage: seen.session });
  check(!seen.cookie.includes(COOKIE), `${where}: document.cookie shows the session cookie: ${seen.cookie}`);
  const text = JSON.stringify(seen);
  check(!/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\./.test(text), `${where}: a JWT is readable by the page's script: ${text}`);
  check(!/(access|refresh|id)_token/.test(text), `${where}: the page's script can read a token: ${text}`);
}

async function shot(page, name) {
  try {
    await page.screenshot({ path: path.join(OUT, name), fullPage: true, timeout: 5000 });
  } catch (e) {
    log(`  (screenshot ${name} failed: ${e.message.split('\n')[0]})`);
  }
}

// ------------------------------------------------------------------------ body checks

const JWT = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;
const TOKEN_KEY = /"(access_token|refresh_token|id_token)"\s*:\s*"[^"]+"/;

function isLogoutAnswer(r) {
  return r.url.startsWith(`${BFF}/bff/logout`);
}

/** Strings of 43+ base64url characters (an opaque oidc-provider token is 43) in a JSON value. */
function tokenLikeStrings(value, at = '$', out = []) {
  if (typeof value === 'string') {
    if (/^[A-Za-z0-9_-]{43,}$/.test(value)) out.push(`${at} = ${value}`);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => tokenLikeStrings(v, `${at}[${i}]`, out));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) tokenLikeStrings(v, `${at}.${k}`, out);
  }
  return out;
}

function checkBodies() {
  const problems = [];
  let bodies = 0;
  for (const r of [...records.responses, ...records.fetchBodies]) {
    if (typeof r.body !== 'string') continue;
    bodies += 1;
    const where = `${r.method} ${r.url} (${r.status}, ${r.type})`;
    if (TOKEN_KEY.test(r.body)) problems.push(`${where}: body carries a token field: ${r.body.slice(0, 300)}`);
    const jwts = r.body.match(JWT) ?? [];
    // No exception, not even POST /bff/logout: its logout_url is a one-time bffgate link,
    // and the ID token (id_token_hint) is added to the provider's URL server-side.
    if (jwts.length) {
      problems.push(`${where}: body contains a JWT: ${jwts[0].slice(0, 40)}…`);
    }
    if (isLogoutAnswer(r) && r.method === 'POST') {
      let url = null;
      try {
        url = JSON.parse(r.body).logout_url;
      } catch {
        problems.push(`${where}: not JSON: ${r.body}`);
      }
      if (url && !url.startsWith(`${BFF}/bff/logout/end?handle=`)) {
        problems.push(`${where}: logout_url is not a bffgate logout link: ${url}`);
      }
      if (url && /id_token_hint|eyJ/.test(url)) problems.push(`${where}: logout_url carries a token: ${url}`);
    }
    if (r.url.startsWith(BFF)) {
      let json;
      try {
        json = JSON.parse(r.body);
      } catch {
        continue;
      }
      for (const s of tokenLikeStrings(json)) problems.push(`${where}: token-like string ${s}`);
    }
  }
  return { problems, bodies };
}

// ------------------------------------------------------------------------ the run

async function run() {
  // launch() starts from a fresh temporary profile of its own (and deletes it on close);
  // playwright refuses a --user-data-dir argument here.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    timeout: 30_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  log(`browser: Chromium ${browser.version()} (${CHROMIUM})`);
  log(`SPA ${SPA}, bffgate ${BFF}, provider ${OP}`);

  context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  await watch(context);
  const tab1 = await context.newPage();
  currentPage = tab1;

  await step('open the SPA: not logged in', async () => {
    await tab1.goto(`${SPA}/`);
    await waitForStatus(tab1, 'Not logged in');
    check(await tab1.isVisible('#login'), '#login is not visible while logged out');
    check(!(await bffCookie()), 'a session cookie exists before login');
  });

  await step("log in through the provider's real login form", async () => {
    await Promise.all([
      tab1.waitForURL((u) => u.href.startsWith(`${OP}/interaction/`), { timeout: STEP_TIMEOUT_MS }),
      tab1.click('#login'),
    ]).catch(async (e) => fail(`Log in did not reach the provider's login page (now at ${tab1.url()}): ${e.message.split('\n')[0]}`));
    check(await tab1.isVisible('input[name=login]'), `no login field on ${tab1.url()}`);
    await tab1.fill('input[name=login]', USER);
    await tab1.fill('input[name=password]', PASSWORD);
    await shot(tab1, '00-provider-login.png');
    await Promise.all([
      tab1.waitForURL((u) => u.href.startsWith(`${SPA}/`), { timeout: STEP_TIMEOUT_MS }),
      tab1.click('button[type=submit]'),
    ]).catch(async (e) => {
      const body = (await tab1.textContent('body').catch(() => '')) ?? '';
      fail(`after submitting the login form the browser is at ${tab1.url()}, not the SPA: ${body.trim().slice(0, 300)} (${e.message.split('\n')[0]})`);
    });
    await waitForStatus(tab1, `Logged in as ${EXPECT_NAME}`);
    const user = await tab1.getAttribute('#status', 'data-user');
    check(user === USER, `#status data-user is ${JSON.stringify(user)}, expected ${USER}`);
    check(await tab1.isVisible('#logout'), '#logout is not visible while logged in');
    check(!(await tab1.isVisible('#error')), `the SPA shows an error: ${await tab1.textContent('#error')}`);
    await shot(tab1, '01-logged-in.png');
  });

  let sessionCookie;
  await step('the session cookie: HttpOnly, SameSite=Strict, Secure, host-only; invisible to scripts', async () => {
    const all = await context.cookies();
    sessionCookie = all.find((c) => c.name === COOKIE);
    check(sessionCookie, `no ${COOKIE} cookie for ${BFF}; cookies: ${JSON.stringify(all.map((c) => `${c.name}@${c.domain}`))}`);
    records.cookies.push(...all.map((c) => ({ ...c })));
    const { httpOnly, sameSite, secure, domain, path: cpath } = sessionCookie;
    log(`  ${COOKIE}: domain=${domain} path=${cpath} httpOnly=${httpOnly} sameSite=${sameSite} secure=${secure} (${sessionCookie.value.length} chars)`);
    check(httpOnly === true, `${COOKIE} is not HttpOnly`);
    check(sameSite === 'Strict', `${COOKIE} SameSite is ${sameSite}, not Strict`);
    check(secure === SECURE_COOKIE, `${COOKIE} Secure is ${secure}, expected ${SECURE_COOKIE}`);
    check(domain === new URL(BFF).hostname, `${COOKIE} domain is ${domain}`);
    // The login-binding cookie stays (shared by logins in other tabs) until its Max-Age,
    // the login timeout: HttpOnly, Lax (the provider's redirect back is cross-site),
    // Secure like the session cookie, only sent to the agent's endpoints.
    const login = all.find((c) => c.name === `${COOKIE}_login`);
    if (login) {
      const left = login.expires - Date.now() / 1000;
      log(`  ${COOKIE}_login: path=${login.path} httpOnly=${login.httpOnly} sameSite=${login.sameSite} secure=${login.secure}, expires in ${Math.round(left)} s`);
      check(login.httpOnly && login.sameSite === 'Lax' && login.secure === SECURE_COOKIE && login.path === '/bff',
        `the login-binding cookie has unexpected attributes: ${JSON.stringify({ ...login, value: '…' })}`);
      check(login.expires > 0 && left <= 11 * 60, `the login-binding cookie lives ${Math.round(left)} s, longer than the login timeout`);
    }
    await checkPageSecrets(tab1, 'logged in');
  });

  await step('call the API through bffgate: 200 with a verified token', async () => {
    const r = await callApi(tab1);
    const body = expectApiOk(r, 'tab 1');
    log(`  API: ${body.message} (scope ${body.scope})`);
    await shot(tab1, '02-api-result.png');
  });

  await step('reload: the session survives', async () => {
    await tab1.reload();
    await waitForStatus(tab1, `Logged in as ${EXPECT_NAME}`);
    expectApiOk(await callApi(tab1), 'tab 1 after reload');
    await shot(tab1, '03-after-reload.png');
  });

  const tab2 = await context.newPage();
  await step('a second tab shares the session', async () => {
    currentPage = tab2;
    await tab2.goto(`${SPA}/`);
    await waitForStatus(tab2, `Logged in as ${EXPECT_NAME}`);
    expectApiOk(await callApi(tab2), 'tab 2');
    await checkPageSecrets(tab2, 'tab 2');
    await shot(tab2, '04-second-tab.png');
  });

  await step("log out in tab 1 (through the provider's end-session page)", async () => {
    currentPage = tab1;
    await tab1.bringToFront();
    const logoutAnswer = tab1.waitForResponse((r) => r.url() === `${BFF}/bff/logout` && r.request().method() === 'POST', { timeout: STEP_TIMEOUT_MS });
    await tab1.click('#logout');
    const answer = await logoutAnswer.catch(() => fail('clicking #logout sent no POST /bff/logout'));
    check(answer.status() === 200, `POST /bff/logout answered ${answer.status()}`);
    // The provider asks for confirmation (a form with a "Sign out" button); then it sends
    // the browser to post_logout_redirect_uri, the SPA.
    // The SPA navigates to logout_url, bffgate's one-time link, which redirects to the
    // provider's end-session endpoint.
    await tab1.waitForURL((u) => u.href.startsWith(`${OP}/`), { timeout: STEP_TIMEOUT_MS })
      .catch(() => fail(`after Log out the browser is at ${tab1.url()}, not the provider's end-session page`));
    {
      await tab1.waitForLoadState('domcontentloaded');
      const confirm = tab1.locator('form button[type=submit], form input[type=submit]');
      if (await confirm.count()) {
        log(`  provider confirmation page at ${new URL(tab1.url()).pathname}: confirming`);
        await Promise.all([
          tab1.waitForURL((u) => u.href.startsWith(`${SPA}/`), { timeout: STEP_TIMEOUT_MS }),
          confirm.first().click(),
        ]).catch(async () => fail(`after confirming the logout the browser is at ${tab1.url()}: ${(await tab1.textContent('body').catch(() => ''))?.trim().slice(0, 200)}`));
      } else {
        await tab1.waitForURL((u) => u.href.startsWith(`${SPA}/`), { timeout: STEP_TIMEOUT_MS })
          .catch(async () => fail(`logout stopped at ${tab1.url()}: ${(await tab1.textContent('body').catch(() => ''))?.trim().slice(0, 200)}`));
      }
    }
    await waitForStatus(tab1, 'Not logged in');
    check(!(await bffCookie()), `${COOKIE} is still in the browser after logout`);
    // The answer's body as the recorder read it (the page navigated away right after).
    await Promise.allSettled(pendingBodies);
    const recorded = records.fetchBodies.find((r) => r.url === `${BFF}/bff/logout` && r.method === 'POST');
    check(typeof recorded?.body === 'string', 'the body of POST /bff/logout was not recorded');
    const logoutUrl = JSON.parse(recorded.body).logout_url;
    check(logoutUrl && logoutUrl.startsWith(`${BFF}/bff/logout/end?handle=`), `logout_url is ${JSON.stringify(logoutUrl)}, not bffgate's one-time logout link`);
    check(records.requests.some((r) => r.url === logoutUrl), 'the browser did not follow logout_url');
    const hop = records.responses.find((r) => r.url === logoutUrl);
    check(hop?.status === 302 && hop.location?.startsWith(`${OP}/session/end?`), `the logout link answered ${hop?.status} to ${hop?.location}, not a redirect to the provider's end-session endpoint`);
    check(new URL(hop.location).searchParams.get('id_token_hint'), 'the provider was not given id_token_hint');
    await shot(tab1, '05-logged-out.png');
  });

  await step('tab 2 calls the API after the logout: 401', async () => {
    currentPage = tab2;
    await tab2.bringToFront();
    const r = await callApi(tab2);
    check(r.status === 401, `tab 2's API call after logout returned ${r.status}: ${r.text}`);
    log(`  tab 2: ${r.text}`);
    await waitForStatus(tab2, 'Not logged in');
    await shot(tab2, '06-second-tab-after-logout.png');
  });

  await step('the old session cookie, put back, is refused: the session is gone server-side', async () => {
    // As if the cookie had been copied before the logout.
    await context.addCookies([{ ...sessionCookie }]);
    const r = await callApi(tab2);
    check(r.status === 401, `the pre-logout cookie still works: ${r.status}: ${r.text}`);
    check(/session_expired|invalid_session/.test(r.text), `unexpected 401 for a logged-out session: ${r.text}`);
    log(`  tab 2 with the old cookie: ${r.text}`);
    await context.clearCookies();
  });

  await Promise.allSettled(pendingBodies);

  await step('no response body the browser received holds a token', async () => {
    const { problems, bodies } = checkBodies();
    check(bodies >= 10, `only ${bodies} response bodies were recorded: the recording is broken`);
    for (const list of ['responses', 'fetchBodies']) {
      check(
        records[list].some((r) => r.url.startsWith(`${BFF}/api/`) && r.status === 200 && r.body?.includes('token_verified')),
        `the API answers were not recorded (${list})`,
      );
    }
    const unread = records.responses.filter((r) => r.body_error && r.type !== 'fetch');
    check(unread.length === 0, `bodies the recorder could not read: ${unread.map((r) => `${r.url}: ${r.body_error}`).join('; ')}`);
    check(problems.length === 0, `token material reached the browser:\n  ${problems.join('\n  ')}`);
    for (const r of records.requests) {
      if (TOKEN_KEY.test(r.url) || /[?&](access_token|refresh_token)=/.test(r.url)) fail(`a request URL carries a token: ${r.url}`);
    }
    log(`  ${bodies} bodies checked (${records.responses.length} responses, ${records.fetchBodies.length} fetch answers as the page read them)`);
  });
}

// ------------------------------------------------------------------------ main

const watchdog = setTimeout(async () => {
  console.error(`e2e: FAILED: the run took longer than ${TOTAL_BUDGET_MS / 1000} s (at step ${stepNo}, ${currentPage?.url()})`);
  if (currentPage) await shot(currentPage, 'failure.png');
  writeRecords();
  process.exit(3);
}, TOTAL_BUDGET_MS);

function writeRecords() {
  try {
    writeFileSync(path.join(OUT, 'records.json'), JSON.stringify(records, null, 1));
  } catch (e) {
    console.error(`e2e: could not write records.json: ${e.message}`);
  }
}

let code = 0;
try {
  await run();
  log(`PASSED: ${stepNo} steps`);
} catch (e) {
  code = 1;
  const page = currentPage;
  console.error(`\ne2e: FAILED at step ${stepNo}: ${e instanceof StepFailure ? e.message : (e.stack ?? e)}`);
  if (page && !page.isClosed()) {
    console.error(`  page: ${page.url()}`);
    console.error(`  #status: ${JSON.stringify(await statusText(page))}`);
    const result = await page.locator('#result').textContent({ timeout: 1000 }).catch(() => null);
    if (result !== null) console.error(`  #result: ${JSON.stringify(result.trim().slice(0, 500))}`);
    await shot(page, 'failure.png');
    console.error(`  screenshot: ${path.join(OUT, 'failure.png')}`);
  }
  const tail = records.responses.slice(-12).map((r) => `  ${r.status} ${r.method} ${r.url}${r.location ? ` -> ${r.location}` : ''}`);
  console.error(`last responses:\n${tail.join('\n')}`);
  if (consoleLines.length) console.error(`browser console:\n  ${consoleLines.slice(-20).join('\n  ')}`);
} finally {
  await Promise.race([Promise.allSettled(pendingBodies), new Promise((r) => setTimeout(r, 2000))]);
  writeRecords();
  clearTimeout(watchdog);
  await browser?.close().catch(() => {});
}
process.exit(code);
