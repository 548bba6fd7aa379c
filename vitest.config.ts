import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['common/test/**/*.test.ts', 'server/test/**/*.test.ts', 'agent/test/**/*.test.ts', 'test/e2e/**/*.test.ts', 'scripts/test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
