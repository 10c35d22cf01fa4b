/**
 * Installing the package as a user would, on a server without a compiler: `npm pack` of this
 * checkout (prepack builds dist/ and the prebuild), `npm install -g` of the tarball into a fresh
 * prefix with a PATH holding only node, npm and the system tools ctwatch runs (ip, nft, sysctl):
 * no cc, gcc, clang, make or python. From there `ctwatch --help`, `ctwatch stats --netns NS`
 * against a real namespace, and `ctwatch demo --quick` (whose load generator then runs in Node)
 * must work, on the prebuilt addon alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, createNetns, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);

/** The only programs on PATH: what ctwatch and npm run, and nothing that compiles. */
const TOOLS = ['node', 'npm', 'sh', 'ip', 'nft', 'sysctl', 'env'];
const COMPILERS = ['cc', 'gcc', 'clang', 'c++', 'g++', 'make', 'python', 'python3', 'node-gyp'];

function which(cmd: string): string {
  if (cmd === 'node') return process.execPath;
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin'])) {
    const p = join(dir, cmd);
    if (dir && existsSync(p)) return realpathSync(p);
  }
  throw new Error(`${cmd} is not installed: run 'bash scripts/setup.sh'`);
}

let work: string;
let prefix: string;
let bin: string;
let env: NodeJS.ProcessEnv;
let ns: Netns;
let pkgDir: string;

async function ctwatch(args: string[], timeout = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(join(prefix, 'bin', 'ctwatch'), args, { env, timeout, cwd: work, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: unknown; stdout: string; stderr: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ctwatch-install-'));
  bin = join(work, 'path');
  prefix = join(work, 'prefix');
  mkdirSync(bin);
  for (const t of TOOLS) symlinkSync(which(t), join(bin, t));
  // Only PATH changes: npm's settings (its cache, the registry's CA) stay as they are here.
  env = { ...process.env, PATH: bin, npm_config_update_notifier: 'false' };
  ns = await createNetns();
}, 60_000);

afterAll(async () => {
  await ns?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('npm install -g of the packed checkout, without a compiler', () => {
  it('packs exactly what runs: dist, the prebuild, native sources for the fallback, docs, contrib', async () => {
    // The checkout packs with its own tools (prepack needs node-gyp's make and binutils' strip).
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    const [{ filename, files }] = JSON.parse(stdout.slice(stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    const paths = files.map((f) => f.path);
    expect(paths).toContain('prebuilds/linux-x64/ctwatch.napi.node');
    expect(paths).toContain('prebuilds/linux-x64/ctwatch.json');
    expect(paths).toContain('dist/cli/main.js');
    expect(paths).toContain('dist/lab/generator.js');
    expect(paths).toContain('native/load.cjs');
    expect(paths).toContain('binding.gyp');
    expect(paths).toContain('src/lab/ctwatch-lab.c');
    expect(paths).toContain('contrib/ctwatch.service');
    expect(paths).toContain('docs/runbook.md');
    // the JSON Schemas doctor --help and stats --help point at
    expect(paths).toContain('schema/v1/doctor.json');
    expect(paths).toContain('schema/v1/churn.json');
    expect(paths).toContain('schema/v1/flow.json');
    // generated from --help by prepack (scripts/gen-manuals.mjs)
    expect(paths).toContain('man/ctwatch.1');
    expect(paths).toContain('completion/ctwatch.bash');
    expect(paths).toContain('completion/_ctwatch');
    // the two files of src/ read at run time: the demo generator's C source, the CRI client's proto
    const RUNTIME_SOURCES = ['src/lab/ctwatch-lab.c', 'src/process/cri.proto'];
    for (const f of RUNTIME_SOURCES) expect(paths).toContain(f);
    // no tests, benchmarks, local build output, TypeScript sources or build state
    const junk = paths.filter((p) => /^(test|bench|build|node_modules|\.ci)\//.test(p) || (/^src\//.test(p) && !RUNTIME_SOURCES.includes(p)) || /tsbuildinfo|\.tgz$/.test(p));
    expect(junk).toEqual([]);

    const compilersHere = COMPILERS.filter((c) => existsSync(join(bin, c)));
    expect(compilersHere).toEqual([]);
    // --prefix moves npm's global config: keep the machine's (registry, CA) with --globalconfig.
    // --allow-scripts: the install script runs, finds the prebuild loads, and compiles nothing.
    const globalconfig = (await run('npm', ['config', 'get', 'globalconfig'], { env: process.env })).stdout.trim();
    const installed = await run('npm', ['install', '-g', '--prefix', prefix, '--globalconfig', globalconfig, '--allow-scripts=ctwatch', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', join(work, filename)], { env, cwd: work, timeout: 120_000 });
    expect(`${installed.stdout}${installed.stderr}`).not.toMatch(/gyp|compiling/i);
    pkgDir = join(prefix, 'lib', 'node_modules', 'ctwatch');
    expect(existsSync(join(prefix, 'bin', 'ctwatch'))).toBe(true);
    // npm's "man" field: `man ctwatch` finds it under the prefix
    expect(existsSync(join(prefix, 'share', 'man', 'man1', 'ctwatch.1'))).toBe(true);
    // nothing was compiled: the prebuild is what loads
    expect(existsSync(join(pkgDir, 'build'))).toBe(false);
  }, 180_000);

  it('ctwatch --help', async () => {
    const r = await ctwatch(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ctwatch — /);
    expect(r.stdout).toMatch(/demo\s+the table-full incident/);
  });

  it('ctwatch stats --netns NS reads the namespace through the prebuilt addon', async () => {
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.5', port: 7001 }], run: [{ kind: 'connect', host: '127.0.0.5', port: 7001, count: 20, rate: 0 }] });
    const r = await ctwatch(['stats', '--netns', ns.name, '--json', '--interval', '500ms']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = (JSON.parse(r.stdout) as { table: { entries: number; max: number } }).table;
    expect(s.entries).toBeGreaterThanOrEqual(20);
    expect(s.max).toBeGreaterThan(0);
  });

  it('ctwatch doctor names the prebuild it loaded', async () => {
    const r = await ctwatch(['doctor', '--netns', ns.name, '--json']);
    const d = JSON.parse(r.stdout) as { checks: { check: string; status: string; finding: string }[] };
    const addon = d.checks.find((c) => c.check === 'addon');
    expect(addon?.status).toBe('ok');
    expect(addon?.finding).toContain(join(pkgDir, 'prebuilds', 'linux-x64', 'ctwatch.napi.node'));
  });

  it('ctwatch demo --quick runs, its load generator in Node for want of a compiler', async () => {
    const r = await ctwatch(['demo', '--quick', '--json'], 90_000);
    expect(r.stderr).toMatch(/no C compiler .* the leak runs in Node instead/);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout.trim().split('\n').pop()!) as { alert: { rule: string; subject?: string; message: string } | null; peakRate: number };
    expect(s.alert).not.toBeNull();
    expect(s.alert!.message).toContain('127.0.0.5');
    // the demo leaves nothing behind
    expect(readdirSync('/run/netns').filter((n) => n.startsWith('ctwatch-demo-'))).toEqual([]);
    // and compiled nothing into the package
    expect(existsSync(join(pkgDir, 'build'))).toBe(false);
  }, 120_000);
});
