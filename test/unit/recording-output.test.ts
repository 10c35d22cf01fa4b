// Outputs on real files and a real pipe: a regular file is written on the calling thread, a slow
// write moves it to background writes once, and a pipe is always written in the background. The
// children import dist/ (as the CLI does), so these need a build (npm test makes one first).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openOutput } from '../../src/recording/output.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), 'ctwatch-output-'));
  dirs.push(d);
  return d;
}
const line = (i: number) => Buffer.from(`{"v":1,"event":"flow","n":${i}}\n`);
const OUTPUT_JS = JSON.stringify(new URL('../../dist/recording/output.js', import.meta.url).href);

/** Runs an ES module script in a child (through bash, for ulimit), with a deadline. */
async function child(script: string, ulimit = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawn('bash', ['-c', `${ulimit}exec "$0" --input-type=module -e "$1"`, process.execPath, script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`child did not finish within 20 s: ${stderr}`));
    }, 20_000);
    p.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  return { code, stdout, stderr };
}

describe('openOutput', () => {
  it('writes a regular file before write() returns, and nothing is lost over many writes', async () => {
    const file = join(scratch(), 'flows.jsonl');
    const errors: unknown[] = [];
    const slow: number[] = [];
    const out = openOutput(file, (e) => errors.push(e), { log: { warn: (f) => slow.push((f as { ms: number }).ms) }, slowWriteMs: 60_000 });
    expect(out.background).toBe(false);
    expect(out.write(line(0))).toBe(true);
    // no await in between: a background write could not have happened yet
    expect(readFileSync(file, 'utf8')).toBe(line(0).toString());
    for (let i = 1; i < 2000; i++) out.write(line(i));
    expect(readFileSync(file, 'utf8').split('\n').length - 1).toBe(2000);
    await out.end();
    expect(errors).toEqual([]);
    expect(slow).toEqual([]);
  });

  it('moves to background writes after one slow write, says so once, and keeps every line in order', async () => {
    const file = join(scratch(), 'flows.jsonl');
    const slow: number[] = [];
    // every write is "slow" against a negative limit: the first one moves the output
    const out = openOutput(file, (e) => { throw e; }, { log: { warn: (f) => slow.push((f as { ms: number }).ms) }, slowWriteMs: -1 });
    out.write(line(0));
    expect(readFileSync(file, 'utf8')).toBe(line(0).toString()); // the first was still written inline
    expect(slow).toHaveLength(1);
    expect(out.background).toBe(true);
    // (not asserted: that the second line is not in the file yet; the pool's thread may be quicker)
    out.write(line(1));
    for (let i = 2; i < 500; i++) out.write(line(i));
    await out.end();
    expect(slow).toHaveLength(1);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines).toEqual(Array.from({ length: 500 }, (_, i) => line(i).toString().trimEnd()));
  });

  it('writes stdout that is a pipe in the background', async () => {
    // the child's stdout is a pipe (node's: a socket pair) to this test
    const { code, stdout, stderr } = await child(`
      const { openOutput } = await import(${OUTPUT_JS});
      const { fstatSync } = await import('node:fs');
      const out = openOutput('-', (e) => { console.error(String(e)); process.exit(3); });
      out.write(Buffer.from('first\\n'));
      process.stderr.write((fstatSync(1).isFile() ? 'a file' : 'a pipe') + (out.background ? ' in the background' : ' inline') + '\\n');
      for (let i = 0; i < 1000; i++) out.write(Buffer.from('line ' + i + '\\n'));
      await out.end();
    `);
    expect(stderr).toBe('a pipe in the background\n');
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('first');
    expect(lines).toHaveLength(1001);
    expect(lines[1000]).toBe('line 999');
  });

  it('writes what a short write left, and tells a failed write before end() resolves', async () => {
    // A file size limit of 8 KiB: the write that crosses it is short, the next fails (EFBIG). The
    // writes run in a promise continuation, where a next-tick report alone would come after end().
    const file = join(scratch(), 'flows.jsonl');
    const { code, stdout, stderr } = await child(`
      const { openOutput } = await import(${OUTPUT_JS});
      const told = [];
      const out = openOutput(${JSON.stringify(file)}, (e) => told.push(e.message));
      await Promise.resolve();
      const chunk = Buffer.alloc(3000, 0x61);
      for (let i = 0; i < 5; i++) out.write(chunk);
      await out.end();
      console.log(JSON.stringify({ told, errors: out.errors }));
    `, 'ulimit -f 8; ');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const r = JSON.parse(stdout) as { told: string[]; errors: number };
    expect(r.errors).toBe(1);
    expect(r.told).toHaveLength(1);
    expect(r.told[0]).toContain(`writing ${file} failed: EFBIG`);
    // the short write's rest was written up to the limit, not left out
    expect(statSync(file).size).toBe(8192);
  });

  it('keeps writing in the background after a reopen once writes were slow', async () => {
    const dir = scratch();
    const file = join(dir, 'flows.jsonl');
    const slow: number[] = [];
    const out = openOutput(file, (e) => { throw e; }, { log: { warn: (f) => slow.push((f as { ms: number }).ms) }, slowWriteMs: -1 });
    out.write(line(0));
    out.write(line(1));
    expect(out.background).toBe(true);
    renameSync(file, join(dir, 'flows.jsonl.1'));
    out.reopen();
    expect(out.background).toBe(true);
    out.write(line(2));
    await out.end();
    expect(slow).toHaveLength(1);
    expect(readFileSync(join(dir, 'flows.jsonl.1'), 'utf8')).toBe(`${line(0)}${line(1)}`);
    expect(readFileSync(file, 'utf8')).toBe(`${line(2)}`);
  });
});
