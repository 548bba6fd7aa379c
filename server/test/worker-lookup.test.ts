import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { normalizeSerial } from '../../common/pki.js';
import { captureLogger, Harness, type EnrolledAgent } from '../../test/support/harness.js';
import { localAgentBackend, type Refusal } from '../agent-backend.js';
import type { SessionDevice } from '../agent-session.js';
import { workerDeviceLookup } from '../cluster/worker-lookup.js';
import { openConnectReads } from '../storage/connect-reads.js';

const h = new Harness();
afterEach(() => h.cleanup());

function serialOf(agent: EnrolledAgent): string {
  return normalizeSerial(new X509Certificate(agent.certPem).serialNumber);
}

/** A stand-in for the primary's lookup that records what it was asked. */
function primarySpy(): { asked: string[]; lookup: (serial: string, cn: string | undefined) => Promise<SessionDevice | Refusal> } {
  const asked: string[] = [];
  return { asked, lookup: async (serial) => (asked.push(serial), { code: 'DEVICE_UNKNOWN', message: 'asked the primary' }) };
}

describe('an agent worker\'s certificate lookup', () => {
  it('reads a device enrolled a moment ago, and its revocation, from its own read-only connection without asking the primary', async () => {
    const s = await h.startServer();
    const reads = await openConnectReads(path.join(s.dataDir, 'rollcall.db'));
    h.defer(() => reads.close());
    const primary = primarySpy();
    const { log } = captureLogger();
    const { lookup, stats } = workerDeviceLookup(reads, primary.lookup, log);
    const agent = await s.enrollAgent({ hostname: 'fresh' });
    const found = await lookup(serialOf(agent), agent.deviceId);
    expect(found).toMatchObject({ id: agent.deviceId, group: { path: expect.any(String) as string }, stored: { fingerprint: agent.fingerprint, lastEventSeq: 0 } });
    expect(await lookup(serialOf(agent), 'dev_someone_else')).toMatchObject({ code: 'DEVICE_UNKNOWN' });
    expect((await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`)).status).toBe(200);
    expect(await lookup(serialOf(agent), agent.deviceId)).toMatchObject({ code: 'DEVICE_REVOKED', deviceId: agent.deviceId });
    expect(await lookup('ABCDEF', undefined)).toMatchObject({ code: 'DEVICE_UNKNOWN' });
    expect(primary.asked).toEqual([]);
    expect(stats).toEqual({ local: 4, viaPrimary: 0, readErrors: 0 });
  });

  it('asks the primary for a renewed certificate\'s first use (the promotion is a write), and for nothing else of that serial', async () => {
    const s = await h.startServer();
    const reads = await openConnectReads(path.join(s.dataDir, 'rollcall.db'));
    h.defer(() => reads.close());
    const agent = await s.enrollAgent();
    await s.server.storage.certRenewals.add({ serial: 'C0FFEE', deviceId: agent.deviceId, notAfter: Date.now() + 86_400_000, issuedAt: Date.now() });
    const primary = primarySpy();
    const { lookup, stats } = workerDeviceLookup(reads, primary.lookup, captureLogger().log);
    expect(await lookup('C0FFEE', 'dev_not_the_owner')).toMatchObject({ code: 'DEVICE_UNKNOWN' });
    expect(primary.asked).toEqual([]);
    expect(await lookup('C0FFEE', agent.deviceId)).toMatchObject({ message: 'asked the primary' });
    expect(primary.asked).toEqual(['C0FFEE']);
    expect(stats).toMatchObject({ local: 1, viaPrimary: 1 });
  });

  it('answers through the primary when its read fails, with one error line, and keeps answering', async () => {
    const s = await h.startServer();
    const reads = await openConnectReads(path.join(s.dataDir, 'rollcall.db'));
    await reads.close(); // every read fails from now on
    const primary = primarySpy();
    const { log, lines } = captureLogger();
    const { lookup, stats } = workerDeviceLookup(reads, primary.lookup, log);
    for (const serial of ['AA', 'BB', 'CC']) expect(await lookup(serial, 'dev_x')).toMatchObject({ message: 'asked the primary' });
    expect(primary.asked).toEqual(['AA', 'BB', 'CC']);
    expect(stats).toEqual({ local: 0, viaPrimary: 3, readErrors: 3 });
    const errors = lines.filter((l) => l.msg === 'agent worker cannot read the database; asking the primary instead');
    expect(errors).toHaveLength(1); // rate-limited
    expect(String(errors[0]!.err)).toMatch(/storage error/);
  });

  it('refuses to open a database file that is missing or not ours, naming the file', async () => {
    const dir = await h.tempDir('rollcall-reads-');
    const missing = path.join(dir, 'nope.db');
    const err = await openConnectReads(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RollcallError);
    expect((err as RollcallError).code).toBe('STORAGE_ERROR');
    expect((err as Error).message).toContain(missing);
    const empty = path.join(dir, 'empty.db');
    await fs.writeFile(empty, ''); // SQLite reads an empty file as an empty database: no devices table
    const notOurs = await openConnectReads(empty).catch((e: unknown) => e);
    expect((notOurs as RollcallError).code).toBe('STORAGE_ERROR');
    expect((notOurs as Error).message).toMatch(/no such table: devices/);
  });
});

describe('one process\'s certificate lookup', () => {
  it('reads through its connect reads, promotes a renewed certificate through the writer, and lets a failed read fail the lookup as before', async () => {
    const s = await h.startServer();
    const storage = s.server.storage;
    const agent = await s.enrollAgent();
    const reads = await openConnectReads(path.join(s.dataDir, 'rollcall.db'));
    h.defer(() => reads.close());
    const asked: string[] = [];
    let failing = false;
    const spy = {
      findForConnect: (serial: string) => {
        asked.push(serial);
        return failing ? Promise.reject(new RollcallError('STORAGE_ERROR', 'storage error: read failed')) : reads.findForConnect(serial);
      },
    };
    const backend = localAgentBackend({ storage, ca: () => s.server.pki.ca, now: Date.now, log: captureLogger().log, connectReads: spy });
    expect(await backend.lookupDevice(serialOf(agent), agent.deviceId)).toMatchObject({ id: agent.deviceId, group: { path: expect.any(String) as string } });
    expect(asked).toEqual([serialOf(agent)]);
    // A renewed certificate's first use: not found by the read, promoted on the writer, then found there.
    await storage.certRenewals.add({ serial: 'C0FFEE', deviceId: agent.deviceId, notAfter: Date.now() + 86_400_000, issuedAt: Date.now() });
    expect(await backend.lookupDevice('C0FFEE', agent.deviceId)).toMatchObject({ id: agent.deviceId });
    expect((await storage.devices.get(agent.deviceId))?.certSerial).toBe('C0FFEE');
    failing = true;
    await expect(backend.lookupDevice(serialOf(agent), agent.deviceId)).rejects.toThrow(/storage error/);
  });
});
