/**
 * `ctwatch report` end to end: a recording made against the real kernel in our own namespace (a
 * leak to one destination next to light steady traffic), rendered as an HTML page, opened in a
 * real headless browser (Debian's chromium): it renders (a screenshot of the page's size), every
 * plotted series equals what `ctwatch replay` computes from the same recording, the alerts are on
 * the timeline, and the page can fetch nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, createNetns, waitFor, type Netns } from '../helpers/netns.js';
import { RECORDING, startCli } from '../helpers/cli.js';

const run = promisify(execFile);
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

/** `--no-sandbox`: the test runs as root, where chromium's sandbox refuses to start. */
async function chromium(args: string[], dir: string): Promise<string> {
  const { stdout } = await run(CHROMIUM!, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-extensions', `--user-data-dir=${join(dir, 'profile')}`, '--hide-scrollbars', ...args], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

function attr(tag: string, name: string): string | undefined {
  return new RegExp(`${name}="([^"]*)"`).exec(tag)?.[1];
}

/** The plotted series of the page: data-series → values (null where the line has a gap). */
function plotted(dom: string, figure: string): Map<string, (number | null)[]> {
  const start = dom.indexOf(`<figure id="${figure}"`);
  expect(start, `figure ${figure}`).toBeGreaterThanOrEqual(0);
  const body = dom.slice(start, dom.indexOf('</figure>', start));
  const out = new Map<string, (number | null)[]>();
  for (const m of body.matchAll(/<path [^>]*class="series"[^>]*>/g)) {
    const values = attr(m[0], 'data-values')!.split(',').map((v) => (v === '' ? null : Number(v)));
    out.set(attr(m[0], 'data-series')!.replace(/&amp;/g, '&'), values);
  }
  return out;
}

const round = (v: number | null) => (v === null ? null : Math.round(v * 1e6) / 1e6);

// Never skipped: scripts/setup.sh installs chromium, and a missing browser fails here with the fix.
describe('ctwatch report: a real recording as one page in a real browser', () => {
  it('has a browser to render with', () => {
    expect(CHROMIUM, 'no chromium at /usr/bin/chromium: run scripts/setup.sh (it installs chromium)').toBeDefined();
  });
  let ns: Netns;
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-report-'));
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
    // CTWATCH_KEEP_REPORT=1 keeps the recording, the page and its screenshot to look at
    if (process.env.CTWATCH_KEEP_REPORT) console.log(`report test files kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });

  it('renders the recording: charts equal the replay, alerts on the timeline, nothing fetched', async () => {
    const rec = join(dir, 'incident.jsonl');
    const recorder = startCli(['record', '--netns', ns.name, '--events', 'new,update,destroy', '--flows', '--churn', '1s', '-o', rec]);
    try {
      await waitFor(() => recorder.stderr.includes(RECORDING), 'record to start');
      await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6379 }, { proto: 'tcp', host: '127.0.0.6', port: 80 }],
        parallel: true,
        run: [
          { kind: 'connect', host: '127.0.0.6', port: 80, count: 200, rate: 40 },
          { kind: 'connect', host: '127.0.0.5', port: 6379, from: '127.0.1.7', count: 3200, rate: 800, concurrency: 32 },
        ],
      });
      // a few quiet seconds after the leak, so the page shows it end
      await new Promise((r) => setTimeout(r, 2500));
    } finally {
      recorder.kill('SIGTERM');
    }
    expect(await recorder.exited).toBe(0);

    const rules = join(dir, 'rules.yaml');
    writeFileSync(rules, 'rules:\n  churn_per_destination:\n    rate: new1\n    threshold: 300\n    resolve: 50\n    for: 0s\n    resolve_for: 1s\n');
    const page = join(dir, 'incident.html');
    const made = await run(process.execPath, [CLI, 'report', rec, '-o', page, '--rules', rules], { timeout: 60_000 });
    expect(made.stderr).toContain('report written');
    const html = readFileSync(page, 'utf8');

    // Self-contained: the browser is told to fetch nothing, and there is nothing to fetch.
    expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`);
    expect(html).not.toMatch(/<script|<link|<img|<iframe|\ssrc=|\shref=|url\(|@import/i);

    // The replay of the same recording, second by second.
    const replayed = (await run(process.execPath, [CLI, 'replay', rec, '--churn', '1s', '--no-flows'], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 })).stdout
      .trim().split('\n').map((l) => JSON.parse(l) as { time: string; overall: { new1: number; end1: number }; table: { fill: number | null }; destinations: { key: string; new1: number }[] });
    expect(replayed.length).toBeGreaterThan(4);
    // The live run ticked on through the quiet tail (its churn lines); the page shows that too,
    // with the kernel's figures from those lines.
    const recorded = readFileSync(rec, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; time: string; table?: { fill: number | null } }).filter((l) => l.event === 'churn');
    const tail = recorded.filter((l) => l.time > replayed[replayed.length - 1].time);
    expect(tail.length).toBeGreaterThan(0);
    const n = replayed.length;

    // A real browser renders it: the screenshot is a PNG of the window we asked for, not blank.
    const shot = join(dir, 'incident.png');
    await chromium([`--screenshot=${shot}`, '--window-size=1000,2200', `file://${page}`], dir);
    const png = readFileSync(shot);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.readUInt32BE(16)).toBe(1000);
    expect(png.readUInt32BE(20)).toBe(2200);
    expect(png.length).toBeGreaterThan(30_000); // a blank white page of that size is ~10 KB

    // What the browser built: the plotted series are the replayed ones.
    const dom = await chromium(['--dump-dom', `file://${page}`], dir);
    const churn = plotted(dom, 'churn');
    expect(churn.get('new/s')!.slice(0, n)).toEqual(replayed.map((s) => round(s.overall.new1)));
    expect(churn.get('ended/s')!.slice(0, n)).toEqual(replayed.map((s) => round(s.overall.end1)));
    expect(churn.get('new/s')!.length).toBe(n + tail.length);
    expect(plotted(dom, 'fill').get('fill')).toEqual([...replayed, ...tail].map((s) => round(s.table!.fill)));
    const dest = plotted(dom, 'destinations');
    expect([...dest.keys()][0]).toBe('127.0.0.5:6379/tcp');
    expect(dest.get('127.0.0.5:6379/tcp')!.slice(0, n)).toEqual(replayed.map((s) => round(s.destinations.find((d) => d.key === '127.0.0.5:6379/tcp')?.new1 ?? null)));
    expect(Math.max(...(dest.get('127.0.0.5:6379/tcp')!.filter((v) => v !== null) as number[]))).toBeGreaterThan(300);
    expect(dest.has('127.0.0.6:80/tcp')).toBe(true);

    // The alert is on the timeline of every chart and in the table; the summary names who.
    expect(dom.match(/<line class="marker critical|<line class="marker warning/g)?.length ?? 0).toBeGreaterThan(0);
    expect(dom).toMatch(/<td>churn_per_destination<\/td><td>[^<]*churn to 127\.0\.0\.5:6379\/tcp/);
    const summary = /<pre id="summary">([\s\S]*?)<\/pre>/.exec(dom)![1];
    // counted from the NEW events: every connection the generator made
    expect(summary).toMatch(/Top destination: 127\.0\.0\.5:6379\/tcp, peak [\d .]+ new\/s at [\d:]+, 3 200 new connections/);
    expect(summary).toMatch(/Top source: 127\.0\.1\.7, peak [\d .]+ new\/s at [\d:]+, 3 200 new connections/);
    expect(summary).toContain('3 400 new connections in all');
    expect(summary).toMatch(/Alerts: \d+ raised, \d+ resolved; first at /);
    expect(summary).toMatch(/Table: peak [\d.]+ % full/);
  }, 120_000);
});
