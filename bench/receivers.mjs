// Loopback receivers for the sink benchmarks, in a child process so that receiving does not share
// the benchmark's event loop: HTTP (HEC, _bulk, NDJSON), syslog over TCP and TLS (RFC 6587 octet
// counting) and UDP, each counting the events it got. `dir` gets a throwaway TLS certificate.
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';

const RECEIVER = String.raw`
import http from 'node:http'; import net from 'node:net'; import tls from 'node:tls'; import dgram from 'node:dgram';
import { gunzipSync } from 'node:zlib'; import { readFileSync } from 'node:fs';
let count = 0;
const ports = {};
const h = http.createServer((req, res) => {
  const chunks = []; req.on('data', (c) => chunks.push(c)); req.on('end', () => {
    let b = Buffer.concat(chunks); if (req.headers['content-encoding'] === 'gzip') b = gunzipSync(b);
    let lines = 0; for (let i = 0; i < b.length; i++) if (b[i] === 10) lines++;
    if (!req.url.includes('/_bulk') && b.length && b[b.length - 1] !== 10) lines++;
    if (req.url.includes('/_bulk')) { count += lines / 2; res.end('{"errors":false}'); }
    else if (req.url.startsWith('/services')) { count += lines; res.end('{"text":"Success","code":0}'); }
    else { count += lines; res.end('{}'); }
  });
});
function octet(sock) {
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    let pos = 0;
    for (;;) {
      const sp = buf.indexOf(32, pos); if (sp < 0) break;
      const len = Number(buf.toString('latin1', pos, sp)); if (sp + 1 + len > buf.length) break;
      pos = sp + 1 + len; count++;
    }
    buf = buf.subarray(pos);
  });
}
const t = net.createServer(octet);
const s = tls.createServer({ cert: readFileSync(process.argv[1]), key: readFileSync(process.argv[2]) }, octet);
const u = dgram.createSocket('udp4'); u.on('message', () => count++);
await new Promise((r) => h.listen(0, '127.0.0.1', r)); ports.http = h.address().port;
await new Promise((r) => t.listen(0, '127.0.0.1', r)); ports.tcp = t.address().port;
await new Promise((r) => s.listen(0, '127.0.0.1', r)); ports.tls = s.address().port;
await new Promise((r) => u.bind(0, '127.0.0.1', r)); ports.udp = u.address().port;
u.setRecvBufferSize(8 << 20);
process.stdout.write(JSON.stringify(ports) + '\n');
process.stdin.on('data', (d) => { for (const c of String(d)) { if (c === '?') process.stdout.write(count + '\n'); if (c === '0') count = 0; } });
process.stdin.on('end', () => process.exit(0));
`;

export async function startReceiver(dir) {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: dir, stdio: 'ignore' });
  const child = spawn(process.execPath, ['--input-type=module', '-e', RECEIVER, join(dir, 'c.pem'), join(dir, 'k.pem')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = [];
  let waiter = null;
  let partial = '';
  child.stdout.on('data', (d) => {
    partial += d;
    let i;
    while ((i = partial.indexOf('\n')) >= 0) {
      lines.push(partial.slice(0, i));
      partial = partial.slice(i + 1);
      waiter?.();
    }
  });
  const next = async () => {
    while (!lines.length) await new Promise((r) => (waiter = r));
    return lines.shift();
  };
  const ports = JSON.parse(await next());
  return {
    ports,
    ca: join(dir, 'c.pem'),
    async count() {
      child.stdin.write('?');
      return Number(await next());
    },
    reset() {
      child.stdin.write('0');
    },
    stop() {
      child.stdin.end();
    },
  };
}
