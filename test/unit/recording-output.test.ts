// Outputs on real files and a real pipe: a regular file is written on the calling thread, a slow
// write moves it to background writes once, and a pipe is always written in the background.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

describe('openOutput', () => {
  it('writes a regular file before write() returns, and nothing is lost over many writes', async () => {
    const file = join(scratch(), 'flows.jsonl');
    const errors: unknown[] = [];
    const slow: number[] = [];
    const out = openOutput(file, (e) => errors.push(e), { onSlowWrite: (ms) => slow.push(ms), slowWriteMs: 60_000 });
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
    const out = openOutput(file, (e) => { throw e; }, { onSlowWrite: (ms) => slow.push(ms), slowWriteMs: -1 });
    out.write(line(0));
    expect(readFileSync(file, 'utf8')).toBe(line(0).toString()); // the first was still written inline
    expect(slow).toHaveLength(1);
    expect(out.background).toBe(true);
    out.write(line(1));
    expect(readFileSync(file, 'utf8')).toBe(line(0).toString()); // the second waits for the pool
    for (let i = 2; i < 500; i++) out.write(line(i));
    await out.end();
    expect(slow).toHaveLength(1);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines).toEqual(Array.from({ length: 500 }, (_, i) => line(i).toString().trimEnd()));
  });

  it('writes stdout that is a pipe in the background', async () => {
    // a child process whose stdout is a pipe (node's: a socket pair) to this test: the output is its fd 1 (needs a build:
    // the child imports dist/, as the CLI does)
    const script = `
      const { openOutput } = await import(${JSON.stringify(new URL('../../dist/recording/output.js', import.meta.url).href)});
      const { fstatSync } = await import('node:fs');
      const out = openOutput('-', (e) => { console.error(String(e)); process.exit(3); });
      out.write(Buffer.from('first\\n'));
      process.stderr.write((fstatSync(1).isFile() ? 'a file' : 'a pipe') + (out.background ? ' in the background' : ' inline') + '\\n');
      for (let i = 0; i < 1000; i++) out.write(Buffer.from('line ' + i + '\\n'));
      await out.end();
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`child did not finish within 20 s: ${stderr}`)); }, 20_000);
      child.on('exit', (c) => { clearTimeout(timer); resolve(c); });
    });
    expect(stderr).toBe('a pipe in the background\n');
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('first');
    expect(lines).toHaveLength(1001);
    expect(lines[1000]).toBe('line 999');
  });
});
