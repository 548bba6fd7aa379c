import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import { openDatabase } from '../storage/db.js';
import { openStorage, type Storage } from '../storage/index.js';
import { LOST_FOUND_GROUP_ID, MIGRATIONS, ROOT_GROUP_ID } from '../storage/migrations.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function open(file?: string): Promise<Storage> {
  const s = await openStorage(file ?? path.join(await h.tempDir(), 'db.sqlite'));
  h.defer(() => s.db.close());
  return s;
}

async function addDevice(s: Storage, id: string, groupId = ROOT_GROUP_ID): Promise<void> {
  await s.devices.insert({ id, certSerial: `S${id}`, certNotAfter: 1, groupId, placementReason: null, hostname: id, fingerprint: null, agentVersion: null, enrolledAt: 1, tokenId: null });
}

describe('storage', () => {
  it('opens in WAL mode with every migration applied once, and keeps its instance id across reopen', async () => {
    const file = path.join(await h.tempDir(), 'db.sqlite');
    const first = await openStorage(file);
    expect((await first.db.get<{ journal_mode: string }>('PRAGMA journal_mode'))?.journal_mode).toBe('wal');
    const versions = await first.db.all<{ version: number }>('SELECT version FROM schema_migrations');
    expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
    const id = first.instanceId;
    await first.db.close();
    const second = await open(file);
    expect(second.instanceId).toBe(id);
    expect((await second.db.all('SELECT version FROM schema_migrations')).length).toBe(MIGRATIONS.length);
  });

  it('has the built-in All and Lost & found groups, which cannot be deleted', async () => {
    const s = await open();
    const groups = await s.groups.list();
    expect(groups.map((g) => g.path)).toEqual(['All', 'All/Lost & found']);
    await expect(s.groups.delete(LOST_FOUND_GROUP_ID)).rejects.toMatchObject({ code: 'GROUP_BUILTIN' });
    await expect(s.groups.delete(ROOT_GROUP_ID)).rejects.toMatchObject({ code: 'GROUP_BUILTIN' });
    await expect(s.groups.create(LOST_FOUND_GROUP_ID, 'x')).rejects.toMatchObject({ code: 'GROUP_BUILTIN' });
  });

  it('creates nested groups by path, resolves them by path or id, and refuses duplicates and bad names', async () => {
    const s = await open();
    const acme = await s.groups.ensurePath('/Customers/Acme/');
    expect(acme.path).toBe('All/Customers/Acme');
    expect((await s.groups.ensurePath('All/Customers/Acme')).id).toBe(acme.id);
    expect((await s.groups.resolve('Customers/Acme')).id).toBe(acme.id);
    expect((await s.groups.resolve(acme.id)).path).toBe('All/Customers/Acme');
    await expect(s.groups.resolve('Customers/Nobody')).rejects.toMatchObject({ code: 'GROUP_NOT_FOUND' });
    await expect(s.groups.create(acme.parentId!, 'Acme')).rejects.toMatchObject({ code: 'GROUP_EXISTS' });
    await expect(s.groups.create(ROOT_GROUP_ID, 'a/b')).rejects.toMatchObject({ code: 'GROUP_NAME_INVALID' });
    await expect(s.groups.create(ROOT_GROUP_ID, ' ')).rejects.toMatchObject({ code: 'GROUP_NAME_INVALID' });
  });

  it('creates the same path from concurrent requests once, and every request gets it', async () => {
    const s = await open();
    const made = await Promise.all(Array.from({ length: 5 }, () => s.groups.ensurePath('Customers/Race/Deep')));
    expect(new Set(made.map((g) => g.id)).size).toBe(1);
    expect((await s.groups.list()).filter((g) => g.path.startsWith('All/Customers')).map((g) => g.path)).toEqual(['All/Customers', 'All/Customers/Race', 'All/Customers/Race/Deep']);
  });

  it('deletes a group only when it holds no groups and no devices', async () => {
    const s = await open();
    const acme = await s.groups.ensurePath('Customers/Acme');
    await addDevice(s, 'dev_1', acme.id);
    await expect(s.groups.delete(acme.id)).rejects.toMatchObject({ code: 'GROUP_NOT_EMPTY' });
    await expect(s.groups.delete(acme.parentId!)).rejects.toMatchObject({ code: 'GROUP_NOT_EMPTY' });
    await s.devices.move('dev_1', ROOT_GROUP_ID);
    await s.groups.delete(acme.id);
    expect((await s.groups.list()).some((g) => g.id === acme.id)).toBe(false);
  });

  it('applies coalesced check-ins for thousands of devices in multi-row statements, never moving seq backwards', async () => {
    const s = await open();
    const n = 2500;
    await s.db.transaction(async (tx) => {
      for (let i = 0; i < n; i += 1) {
        await s.devices.insert({ id: `d${i}`, certSerial: `S${i}`, certNotAfter: 1, groupId: ROOT_GROUP_ID, placementReason: null, hostname: `h${i}`, fingerprint: null, agentVersion: null, enrolledAt: 1, tokenId: null }, tx);
      }
    });
    const updates = Array.from({ length: n }, (_, i) => ({ deviceId: `d${i}`, seq: 10, at: 5000, address: '127.0.0.2', count: 3 }));
    await s.db.transaction((tx) => s.devices.applyCheckins(updates, tx));
    await s.devices.applyCheckins([{ deviceId: 'd7', seq: 4, at: 6000, address: '127.0.0.3', count: 0 }]);
    expect(await s.devices.get('d7')).toMatchObject({ lastSeq: 10, checkinCount: 3, lastCheckinAt: 6000, lastAddress: '127.0.0.3' });
    expect((await s.db.get<{ n: number }>('SELECT count(*) AS n FROM devices WHERE last_seq = 10 AND checkin_count = 3'))?.n).toBe(n);
  });

  it('reads a device for a connect with its highest stored event sequence in one statement (0 without events)', async () => {
    const s = await open();
    await addDevice(s, 'da');
    await addDevice(s, 'db');
    await s.events.record('da', [1, 2, 7].map((seq) => ({ seq, kind: 'synthetic' as const, at: seq, data: { n: seq } })), 10);
    expect(await s.devices.findForConnect('Sda')).toMatchObject({ device: { id: 'da', fingerprint: null, lastAddress: null }, lastEventSeq: 7 });
    expect(await s.devices.findForConnect('Sdb')).toMatchObject({ device: { id: 'db' }, lastEventSeq: 0 });
    expect(await s.devices.findForConnect('Snone')).toBeUndefined();
    // The fields it reads are the stored ones, after a connect and a revocation too.
    await s.devices.recordConnect('da', { at: 50, address: '127.0.0.7', hostname: 'h', fingerprint: 'fp', agentVersion: '1', os: 'Linux', intervalSec: 60 });
    await s.devices.applyCheckins([{ deviceId: 'da', seq: 9, at: 60, address: '127.0.0.8', count: 1 }]);
    await s.devices.revoke('da', 70);
    const stored = (await s.devices.get('da'))!;
    expect((await s.devices.findForConnect('Sda'))?.device).toEqual({
      id: stored.id,
      groupId: stored.groupId,
      revokedAt: 70,
      lastSeq: 9,
      fingerprint: 'fp',
      lastAddress: '127.0.0.8',
    });
  });

  it('runs a kept prepared statement again and again in order with other statements, fails bad SQL clearly, and closes with it open', async () => {
    const file = path.join(await h.tempDir(), 'prepared.db');
    const db = await openDatabase(file);
    await db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)');
    const insert = 'INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = v + excluded.v';
    const runs = Array.from({ length: 200 }, (_, i) => db.runPrepared(insert, [`k${i % 7}`, 1]));
    const between = db.run('UPDATE t SET v = v * 100 WHERE k = ?', ['k0']); // queued after the first 200, before the next
    const more = db.runPrepared(insert, ['k0', 1]);
    expect((await Promise.all(runs)).every((r) => r.changes === 1)).toBe(true);
    await between;
    expect((await more).changes).toBe(1);
    expect(await db.get<{ v: number }>('SELECT v FROM t WHERE k = ?', ['k0'])).toEqual({ v: 29 * 100 + 1 });
    expect(await db.get<{ n: number }>('SELECT sum(v) AS n FROM t WHERE k <> ?', ['k0'])).toEqual({ n: 200 - 29 });
    // A constraint failure rejects that run only; the statement stays usable.
    await expect(db.runPrepared('INSERT INTO t (k, v) VALUES (?, ?)', ['k1', 1])).rejects.toThrow(/UNIQUE constraint failed.*in: INSERT INTO t/);
    expect((await db.runPrepared('INSERT INTO t (k, v) VALUES (?, ?)', ['new', 5])).changes).toBe(1);
    // SQL that cannot be prepared fails with its text, and is not kept.
    await expect(db.runPrepared('INSERT INTO missing VALUES (?)', [1])).rejects.toMatchObject({ code: 'STORAGE_ERROR', message: expect.stringMatching(/no such table: missing/) });
    await expect(db.runPrepared('INSERT INTO missing VALUES (?)', [1])).rejects.toThrow(/no such table/);
    await db.close(); // SQLite refuses to close with unfinalized statements: close finalizes them
    const again = await openDatabase(file);
    h.defer(() => again.close());
    expect(await again.get<{ n: number }>('SELECT count(*) AS n FROM t')).toEqual({ n: 8 });
  });

  it('counts token uses atomically: a token with 3 uses allows exactly 3 of 10 concurrent consumers', async () => {
    const s = await open();
    const { token } = await s.enrollTokens.create({ groupId: ROOT_GROUP_ID, expiresAt: null, maxUses: 3, now: 1 });
    const results = await Promise.all(Array.from({ length: 10 }, () => s.enrollTokens.consume(token.id, 2)));
    expect(results.filter(Boolean)).toHaveLength(3);
    const expiring = await s.enrollTokens.create({ groupId: ROOT_GROUP_ID, expiresAt: 100, maxUses: null, now: 1 });
    expect(await s.enrollTokens.consume(expiring.token.id, 100)).toBe(false);
    expect(await s.enrollTokens.consume(expiring.token.id, 99)).toBe(true);
  });

  it('stores only hashes of tokens', async () => {
    const s = await open();
    const { secret } = await s.enrollTokens.create({ groupId: ROOT_GROUP_ID, expiresAt: null, maxUses: null, now: 1 });
    const api = await s.apiTokens.create('ci', 1);
    const dump = JSON.stringify([await s.db.all('SELECT * FROM enrollment_tokens'), await s.db.all('SELECT * FROM api_tokens')]);
    expect(dump).not.toContain(secret);
    expect(dump).not.toContain(api.secret);
    expect((await s.enrollTokens.findBySecret(secret))?.groupId).toBe(ROOT_GROUP_ID);
    expect((await s.apiTokens.verify(api.secret))?.name).toBe('ci');
    expect(await s.apiTokens.verify(`${api.secret}x`)).toBeUndefined();
  });
});
