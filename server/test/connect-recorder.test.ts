import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import { ConnectRecorder, type ConnectRecorderOptions } from '../connect-recorder.js';
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

function recorderOn(storage: Storage, transactions: { count: number }, opts?: ConnectRecorderOptions): ConnectRecorder {
  return new ConnectRecorder({
    db: {
      transaction: (work) => {
        transactions.count += 1;
        return storage.db.transaction(work);
      },
    },
    recordConnects: (batch, sql) => storage.devices.recordConnects(batch, sql),
    recordSightings: (list, sql) => storage.evidence.recordSightings(list.map((s) => ({ role: 'agent' as const, ...s })), sql),
  }, opts);
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

describe('connect recorder with a batch interval', () => {
  it('holds the next batch until the interval after the last one started; flush and close write it at once', async () => {
    const storage = await storageWith(['dev_a', 'dev_b', 'dev_c']);
    const tx = { count: 0 };
    let now = 1000;
    const rec = recorderOn(storage, tx, { batchIntervalMs: 60_000, clock: () => now });
    await rec.recordConnect('dev_a', facts(1, 'first')); // the first after a quiet spell goes at once
    expect(tx.count).toBe(1);
    let written = false;
    const held = rec.recordConnect('dev_b', facts(2, 'held')).then(() => {
      written = true;
    });
    for (let i = 0; i < 20; i += 1) await new Promise((r) => setImmediate(r)); // many turns, far less than a minute
    expect(written).toBe(false);
    expect(tx.count).toBe(1);
    await rec.flush();
    await held;
    expect(tx.count).toBe(2);
    expect((await storage.devices.get('dev_b'))?.hostname).toBe('held');
    // Once the interval has passed, a batch goes on the next turn again; close writes a held one.
    now += 60_000;
    await rec.recordConnect('dev_c', facts(3, 'after the interval'));
    expect(tx.count).toBe(3);
    const last = rec.recordSighting({ deviceId: 'dev_c', groupId: ROOT_GROUP_ID, address: '127.0.0.9', at: 4 });
    await rec.close();
    await last;
    expect(tx.count).toBe(4);
    expect(rec.stats).toMatchObject({ batches: 4, failedBatches: 0 });
  });
});

describe('multi-row connect writes', () => {
  it('write more devices and sightings than one statement holds, each row as the single-row writes leave it', async () => {
    const n = 1001; // more than two statements' worth of devices, three of sightings
    const ids = Array.from({ length: n }, (_, i) => `dev_${String(i).padStart(4, '0')}`);
    const storage = await storageWith([]);
    await storage.db.transaction(async (tx) => {
      for (const id of [...ids, 'dev_single']) {
        await storage.devices.insert(
          { id, certSerial: `serial_${id}`, certNotAfter: 4_000_000_000_000, groupId: ROOT_GROUP_ID, placementReason: null, hostname: id, fingerprint: null, agentVersion: null, enrolledAt: 1, tokenId: null },
          tx,
        );
      }
    });
    const factsOf = (i: number): ConnectFacts => ({ at: 5000 + i, address: `127.0.0.${1 + (i % 3)}`, hostname: `host-${i}`, fingerprint: `fp-${i}`, agentVersion: `1.${i}`, os: `Linux ${i}`, intervalSec: 30 + i });
    await storage.db.transaction(async (tx) => {
      await storage.devices.recordConnects(new Map(ids.map((id, i) => [id, factsOf(i)])), tx);
      await storage.evidence.recordSightings(ids.map((id, i) => ({ role: 'agent' as const, address: factsOf(i).address, deviceId: id, groupId: ROOT_GROUP_ID, at: factsOf(i).at })), tx);
    });
    await storage.devices.recordConnect('dev_single', factsOf(7));
    const single = await storage.devices.get('dev_single');
    const batched = await storage.devices.get(ids[7]!);
    expect({ ...batched, id: 'dev_single', certSerial: 'serial_dev_single' }).toEqual(single);
    for (const [i, id] of ids.entries()) {
      expect(await storage.devices.get(id)).toMatchObject({ lastConnectedAt: 5000 + i, hostname: `host-${i}`, fingerprint: `fp-${i}`, agentVersion: `1.${i}`, os: `Linux ${i}`, intervalSec: 30 + i });
    }
    // A second batch updates the sightings it names in place: first seen stays, last seen moves on.
    await storage.evidence.recordSightings([{ role: 'agent', address: factsOf(0).address, deviceId: ids[0]!, groupId: ROOT_GROUP_ID, at: 9000 }]);
    const sightings = (await storage.evidence.sightingsSince(0)).filter((s) => s.role === 'agent');
    expect(sightings).toHaveLength(n);
    expect(sightings.find((s) => s.deviceId === ids[0])).toMatchObject({ firstSeenAt: 5000, lastSeenAt: 9000 });
    expect(sightings.find((s) => s.deviceId === ids[n - 1])).toMatchObject({ firstSeenAt: 5000 + n - 1, lastSeenAt: 5000 + n - 1 });
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

  it('comes with the device in the connect lookup, the same path pathOf walks, after renames and moves too', async () => {
    const storage = await storageWith(['dev_root']);
    const leaf = await storage.groups.ensurePath('Customers/Acme/Site 1');
    await storage.devices.insert({ id: 'dev_leaf', certSerial: 'serial_dev_leaf', certNotAfter: Date.now() + 86_400_000, groupId: leaf.id, placementReason: null, hostname: 'leaf', fingerprint: null, agentVersion: null, enrolledAt: Date.now(), tokenId: null });
    expect((await storage.devices.findForConnect('serial_dev_leaf'))?.groupPath).toBe(leaf.path);
    expect((await storage.devices.findForConnect('serial_dev_root'))?.groupPath).toBe(await storage.groups.pathOf(ROOT_GROUP_ID));
    const acme = await storage.groups.resolve('Customers/Acme');
    await storage.groups.rename(acme.id, 'Acme Ltd');
    await storage.groups.move(acme.id, (await storage.groups.ensurePath('Partners')).id);
    const moved = await storage.groups.pathOf(leaf.id);
    expect(moved).toMatch(/Partners\/Acme Ltd\/Site 1$/);
    expect((await storage.devices.findForConnect('serial_dev_leaf'))?.groupPath).toBe(moved);
  });
});
