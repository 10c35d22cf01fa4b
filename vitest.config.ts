import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The native addon must not run in worker threads (vitest #5730); forks also gives each file a
    // fresh process, which the exit/close tests rely on.
    pool: 'forks',
    // Kernel tests generate bursts and measure rates; on 2 cores, running files side by side would
    // make them flaky, so files run one after another.
    fileParallelism: false,
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
