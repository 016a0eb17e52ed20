// Serves the example SPA (a static page) and /config.js telling it where bffgate is.
//   PORT=3000 BFFGATE_URL=http://localhost:8080 node spa-server.mjs
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const port = Number(process.env.PORT ?? 3000);
const bff = process.env.BFFGATE_URL ?? 'http://localhost:8080';
const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'spa');
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css' };

http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/config.js') {
    res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' });
    return res.end(`window.BFFGATE_URL = ${JSON.stringify(bff)};\n`);
  }
  const name = url.pathname === '/' ? 'index.html' : path.basename(url.pathname);
  try {
    const body = await readFile(path.join(dir, name));
    res.writeHead(200, { 'content-type': types[path.extname(name)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }
}).listen(port, '127.0.0.1', () => console.log(`example SPA on http://localhost:${port}`));
