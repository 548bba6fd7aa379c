import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import { ConnectRecorder } from '../connect-recorder.js';
import { ROOT_GROUP_ID } from '../storage/migrations.js';
import { openStorage, type Storage } from '../storage/index.js';
import type { ConnectFacts } from '../storage/devices-store.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function storageWith(devices: string[]): Promise<Storage> {
  const storage = await openStorage(path.join(await h.tempDir(), 'rollcall.db'));
  h.defer(() => storage.db.close());
  for (const id of devices) {
    await storage.devices.insert({
      id,
      certSerial: `serial_${id}`,
      certNotAfter: Date.now() + 86_400_000,
      groupId: ROOT_GROUP_ID,
      placementReason: null,
      hostname: id,
      fingerprint: null,
      agentVersion: null,
      enrolledAt: Date.now(),
      tokenId: null,
    });
  }
  return storage;
}

function recorderOn(storage: Storage, transactions: { count: number }): ConnectRecorder {
  return new ConnectRecorder({
    db: {
      transaction: (work) => {
        transactions.count += 1;
        return storage.db.transaction(work);
      },
    },
    recordConnect: (id, facts, sql) => storage.devices.recordConnect(id, facts, sql),
    recordSighting: (s, sql) => storage.evidence.recordSighting({ role: 'agent', ...s }, sql),
  });
}

const facts = (at: number, hostname: string): ConnectFacts => ({ at, address: '127.0.0.9', hostname, fingerprint: 'f'.repeat(64), agentVersion: '1', os: 'Linux', intervalSec: 60 });

describe('connect recorder', () => {
  it('writes the connects and sightings of one burst in one transaction, newest facts of a device winning', async () => {
    const ids = ['dev_a', 'dev_b', 'dev_c'];
    const storage = await storageWith(ids);
    const tx = { count: 0 };
    const rec = recorderOn(storage, tx);
    const writes = [
      ...ids.map((id, i) => rec.recordConnect(id, facts(1000 + i, `${id}-old`))),
      rec.recordConnect('dev_a', facts(2000, 'dev_a-new')),
      ...ids.map((id) => rec.recordSighting({ deviceId: id, groupId: ROOT_GROUP_ID, address: '127.0.0.9', at: 2000 })),
    ];
    await Promise.all(writes);
    expect(tx.count).toBe(1);
    expect(rec.stats).toMatchObject({ batches: 1, connects: 3, sightings: 3, failedBatches: 0 });
    const a = await storage.devices.get('dev_a');
    expect(a?.hostname).toBe('dev_a-new');
    expect(a?.lastConnectedAt).toBe(2000);
    expect((await storage.devices.get('dev_c'))?.lastConnectedAt).toBe(1002);
    expect((await storage.evidence.sightingsSince(0)).filter((s) => s.role === 'agent')).toHaveLength(3);
  });

  it('rejects the waiters of a failed batch, keeps the next batch apart, and refuses work once closed', async () => {
    const storage = await storageWith(['dev_ok']);
    const tx = { count: 0 };
    const rec = recorderOn(storage, tx);
    // The sightings table is away: the batch fails as a whole, the connect in it too.
    await storage.db.exec('ALTER TABLE sightings RENAME TO sightings_away');
    const bad = rec.recordSighting({ deviceId: 'dev_ok', groupId: ROOT_GROUP_ID, address: '127.0.0.9', at: 1 });
    const inSameBatch = rec.recordConnect('dev_ok', facts(10, 'same-batch'));
    await expect(bad).rejects.toThrow(/storage error/);
    await expect(inSameBatch).rejects.toThrow(/storage error/);
    expect((await storage.devices.get('dev_ok'))?.lastConnectedAt).toBeNull();
    await storage.db.exec('ALTER TABLE sightings_away RENAME TO sightings');
    await rec.recordConnect('dev_ok', facts(20, 'next-batch'));
    expect((await storage.devices.get('dev_ok'))?.hostname).toBe('next-batch');
    expect(rec.stats.failedBatches).toBe(1);
    await rec.close();
    await expect(rec.recordConnect('dev_ok', facts(30, 'late'))).rejects.toThrow(/closed/);
  });
});

describe('group path of a connecting agent', () => {
  it('is the path list() gives, from one group alone, after renames and moves; undefined for an unknown group', async () => {
    const storage = await storageWith([]);
    const leaf = await storage.groups.ensurePath('Customers/Acme/Site 1');
    const other = await storage.groups.ensurePath('Partners');
    expect(await storage.groups.pathOf(leaf.id)).toBe(leaf.path);
    const acme = await storage.groups.resolve('Customers/Acme');
    await storage.groups.rename(acme.id, 'Acme Ltd');
    await storage.groups.move(acme.id, other.id);
    const all = await storage.groups.list();
    for (const g of all) expect(await storage.groups.pathOf(g.id)).toBe(g.path);
    expect(await storage.groups.pathOf(leaf.id)).toMatch(/Partners\/Acme Ltd\/Site 1$/);
    expect(await storage.groups.pathOf(ROOT_GROUP_ID)).toBe(all.find((g) => g.id === ROOT_GROUP_ID)?.path);
    expect(await storage.groups.pathOf('grp_missing')).toBeUndefined();
  });
});
