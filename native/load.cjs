'use strict';
/**
 * Finds and loads the native addon: the one place that knows where it may be. Used by ctwatch
 * (src/source/native.ts) and by the package's install script (scripts/install.mjs), which compiles
 * from source only when nothing here loads.
 *
 * Order: a build made on this machine (a git checkout's `npm run build`, or the install script's
 * fallback compile) wins over the prebuild in the package, so a local rebuild is never shadowed.
 * Every path tried is named, with why it did not load, when none does.
 */
const { existsSync, lstatSync, readFileSync, realpathSync } = require('node:fs');
const { dirname, join } = require('node:path');

const ROOT = join(__dirname, '..');
const TARGET = `${process.platform}-${process.arch}`;

function candidates(root = ROOT) {
  return [
    join(root, 'build', 'Release', 'ctwatch.node'),
    join(root, 'build', 'Debug', 'ctwatch.node'),
    join(root, 'prebuilds', TARGET, 'ctwatch.napi.node'),
  ];
}

/** What the prebuild for this platform was built against (written by scripts/prepack.mjs). */
function prebuildInfo(root = ROOT) {
  try {
    return JSON.parse(readFileSync(join(root, 'prebuilds', TARGET, 'ctwatch.json'), 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Why root must not load `path`, or null: loading an addon is running its code, so as root the
 * file and every directory on its real path must be root's (or ours) and writable by no one else
 * (a sticky directory only when what sits in it is ours) — else a planted build/Debug would win.
 */
function unsafeReason(path) {
  const uid = typeof process.geteuid === 'function' ? process.geteuid() : 0;
  if (uid !== 0) return null;
  let real;
  try {
    real = realpathSync(path);
  } catch (err) {
    return String((err && err.code) || err);
  }
  const ours = (st) => st.uid === 0 || st.uid === uid;
  const file = lstatSync(real);
  if (!file.isFile() || !ours(file) || (file.mode & 0o022) !== 0) return `${real} is not root's alone (owner ${file.uid}, mode ${(file.mode & 0o7777).toString(8)}): root does not load it`;
  let entry = file;
  for (let dir = dirname(real); ; dir = dirname(dir)) {
    const st = lstatSync(dir);
    const writable = (st.mode & 0o022) !== 0;
    const sticky = (st.mode & 0o1000) !== 0;
    if (!ours(st) || (writable && !(sticky && ours(entry)))) return `${dir} can be changed by another account: root does not load ${real} from there`;
    entry = st;
    if (dir === '/') return null;
  }
}

/**
 * Returns { addon, path, skipped } where skipped lists earlier candidates that exist but failed
 * to load ({ path, reason }); or { addon: null, tried } with every candidate and its reason.
 */
function load(root = ROOT) {
  const tried = [];
  for (const path of candidates(root)) {
    if (!existsSync(path)) {
      tried.push({ path, reason: 'not there' });
      continue;
    }
    const unsafe = unsafeReason(path);
    if (unsafe) {
      tried.push({ path, reason: unsafe });
      continue;
    }
    try {
      const addon = require(path);
      return { addon, path, skipped: tried.filter((t) => t.reason !== 'not there') };
    } catch (err) {
      // dlopen's message names the missing library or symbol: keep its first line
      tried.push({ path, reason: String((err && err.message) || err).split('\n')[0] });
    }
  }
  return { addon: null, tried };
}

/** One line an operator can act on, for when load() found nothing that loads. */
function explain(tried, root = ROOT) {
  const info = prebuildInfo(root);
  const needs = info ? ` (the prebuild needs ${TARGET}, glibc >= ${info.glibc}, ${info.libraries.join(' ')})` : '';
  const missingLib = tried.some((t) => /cannot open shared object file/.test(t.reason));
  const fix = missingLib
    ? `install the runtime libraries: apt-get install ${RUNTIME_PACKAGES.join(' ')}`
    : `no prebuild serves this machine${needs}: build from source with 'npm run build' in ${root} (needs ${BUILD_PACKAGES.join(' ')})`;
  return `the native addon did not load (tried ${tried.map((t) => `${t.path}: ${t.reason}`).join('; ')}): ${fix}`;
}

/** Debian packages: what the addon links at run time, and what compiling it needs. */
const RUNTIME_PACKAGES = ['libnetfilter-conntrack3', 'libnfnetlink0', 'libmnl0', 'libbpf1', 'libelf1', 'zlib1g', 'libstdc++6'];
const BUILD_PACKAGES = ['build-essential', 'python3', 'pkg-config', 'libnetfilter-conntrack-dev', 'libmnl-dev', 'libbpf-dev', 'libelf-dev', 'clang', 'llvm', 'bpftool'];

module.exports = { ROOT, TARGET, candidates, load, explain, prebuildInfo, RUNTIME_PACKAGES, BUILD_PACKAGES };
