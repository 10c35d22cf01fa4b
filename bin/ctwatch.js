#!/usr/bin/env node
// First, before the rest of ctwatch loads: a SIGHUP while starting must not kill the daemon.
import { holdEarlySignals } from '../dist/cli/signals.js';

holdEarlySignals();
const { main } = await import('../dist/cli/main.js');

// If the event loop empties while a command is still waiting for something that can no longer
// happen, Node would exit 0 without a word. Never let that pass for success.
let settled = false;
process.on('exit', () => {
  // process.exit(CODE) on purpose (a demo interrupted by a signal) is not this case
  if (!settled && !process.exitCode) {
    process.stderr.write('ctwatch: internal error: stopped before the command finished (an operation never completed); please report it\n');
    process.exitCode = 70;
  }
});

main(process.argv.slice(2)).then(
  (code) => {
    settled = true;
    process.exitCode = code;
  },
  (err) => {
    settled = true;
    process.stderr.write(`ctwatch: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  },
);
