/**
 * What the portal client's tests share: fake portals closed after each test,
 * and the error a fetch fails with, checked for leaked secrets.
 */
import { afterEach, expect } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { FAKE_USER, startFakePortal, type FakePortal, type FakePortalOptions } from './fake-portal.js';

/** Starts fake portals for a test file; every one is closed after each test. */
export function fakePortals(): (options?: FakePortalOptions) => Promise<FakePortal> {
  const open: FakePortal[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((p) => p.close()));
  });
  return async (options = {}) => {
    const p = await startFakePortal(options);
    open.push(p);
    return p;
  };
}

/** The error a fetch fails with; checks that neither it nor its causes carry the password or a token. */
export async function fetchFailure(run: Promise<unknown>): Promise<RollcallError> {
  const err = await run.then(
    () => {
      throw new Error('expected the fetch to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RollcallError);
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    expect(e.message).not.toContain(FAKE_USER.password);
    expect(e.message).not.toMatch(/\b(at|rt)-[0-9a-f]{24}\b/);
  }
  return err as RollcallError;
}
