import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger, Harness, waitFor } from '../../test/support/harness.js';
import { ConsoleSightings } from '../health/console-sightings.js';
import { PublicHosts } from '../health/public-hosts.js';
import type { Observation } from '../storage/evidence-store.js';
import { openStorage, type Storage } from '../storage/index.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function storage(): Promise<Storage> {
  const st = await openStorage(path.join(await h.tempDir(), 'rollcall.db'), { synchronous: 'NORMAL' });
  h.defer(() => st.db.close());
  return st;
}

const obs = (over: Partial<Observation>): Observation => ({
  source: 'agent_probe',
  deviceId: 'dev_1',
  groupId: 'grp_1',
  targetHost: 'rollcall.example.test',
  port: 2222,
  role: 'agent',
  ok: true,
  failureClass: null,
  step: null,
  detail: null,
  sourceAddress: '203.0.113.5',
  observedAt: 1000,
  reportedAt: 1000,
  ...over,
});
const fail = (over: Partial<Observation>): Observation => obs({ ok: false, failureClass: 'TCP_TIMEOUT', step: 'tcp', ...over });

async function states(st: Storage): Promise<Record<string, unknown>[]> {
  return st.db.all('SELECT group_id, port, observer, role, ok, failure_class, step, observed_at, failing_since FROM port_states ORDER BY group_id, port, observer');
}

describe('port states kept from observations', () => {
  it('keeps the latest look of each observer and port, and when its failure began', async () => {
    const st = await storage();
    await st.evidence.record([obs({ observedAt: 1000 }), fail({ observedAt: 2000 }), fail({ observedAt: 3000, failureClass: 'TCP_REFUSED' })]);
    expect(await states(st)).toEqual([
      { group_id: 'grp_1', port: 2222, observer: 'dev_1', role: 'agent', ok: 0, failure_class: 'TCP_REFUSED', step: 'tcp', observed_at: 3000, failing_since: 2000 },
    ]);
    await st.evidence.record([obs({ observedAt: 4000 })]);
    expect(await states(st)).toMatchObject([{ ok: 1, failure_class: null, observed_at: 4000, failing_since: null }]);
  });

  it('lets a failed attempt delivered late move the start of a failure back, but never undo a newer success', async () => {
    const st = await storage();
    await st.evidence.record([obs({ observedAt: 1000 }), fail({ observedAt: 5000 })]);
    await st.evidence.record([fail({ source: 'failed_attempt', observedAt: 3000, failureClass: 'TCP_REFUSED' })]);
    expect(await states(st)).toMatchObject([{ ok: 0, failure_class: 'TCP_TIMEOUT', observed_at: 5000, failing_since: 3000 }]);
    await st.evidence.record([obs({ observedAt: 9000 }), fail({ source: 'failed_attempt', observedAt: 8000 })]);
    expect(await states(st)).toMatchObject([{ ok: 1, observed_at: 9000, failing_since: null }]);
  });

  it('counts an observer as reaching the port when any of its hosts worked, and names the furthest failure otherwise', async () => {
    const st = await storage();
    await st.evidence.record([obs({ targetHost: 'public.example.test', observedAt: 1000 }), fail({ targetHost: 'rollcall.lan', failureClass: 'DNS_NXDOMAIN', step: 'dns', observedAt: 1100 })]);
    expect(await states(st)).toMatchObject([{ ok: 1, failure_class: null }]);
    await st.evidence.record([fail({ targetHost: 'public.example.test', failureClass: 'TLS_UNTRUSTED', step: 'tls', observedAt: 2000 })]);
    expect(await states(st)).toMatchObject([{ ok: 0, failure_class: 'TLS_UNTRUSTED', step: 'tls', failing_since: 2000 }]);
  });

  it('keys a port check without a device by its source address, and ignores observations without a group', async () => {
    const st = await storage();
    await st.evidence.record([fail({ source: 'portcheck', deviceId: null, sourceAddress: '198.51.100.3' }), obs({ groupId: null, deviceId: 'dev_2' })]);
    expect((await states(st)).map((r) => r.observer)).toEqual(['addr:198.51.100.3']);
  });
});

describe('public host resolution', () => {
  it('gives up on a lookup after its deadline and calls it a DNS timeout', async () => {
    const hosts = new PublicHosts({ hosts: ['slow.example.test'], resolve: () => new Promise(() => undefined), timeoutMs: 50 });
    const started = Date.now();
    const [r] = await hosts.current();
    expect(r).toMatchObject({ host: 'slow.example.test', failure: 'DNS_TIMEOUT', addresses: [] });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('answers from what it knows and looks again in the background once the answer is old', async () => {
    let clock = 1_000_000;
    let answer = ['203.0.113.1'];
    let asked = 0;
    let release: () => void = () => undefined;
    const hosts = new PublicHosts({
      hosts: ['rollcall.example.test'],
      resolve: async () => {
        asked += 1;
        if (asked > 1) await new Promise<void>((r) => (release = r));
        return answer;
      },
      refreshMs: 60_000,
      now: () => clock,
    });
    expect((await hosts.current())[0]!.addresses).toEqual(['203.0.113.1']);
    answer = ['203.0.113.2'];
    clock += 61_000;
    expect((await hosts.current())[0]!.addresses).toEqual(['203.0.113.1']); // the lookup hangs; the report does not wait
    expect(asked).toBe(2);
    release();
    await waitFor(async () => (await hosts.current())[0]!.addresses[0] === '203.0.113.2', 'the background lookup to land');
    expect(asked).toBe(2);
  });

  it('treats a temporary resolver failure as a timeout and an unknown name as NXDOMAIN', async () => {
    const hosts = new PublicHosts({
      hosts: ['again.example.test', 'none.example.test'],
      resolve: async (host) => {
        throw Object.assign(new Error(`lookup ${host}`), { code: host.startsWith('again') ? 'EAI_AGAIN' : 'ENOTFOUND' });
      },
    });
    expect((await hosts.current()).map((r) => r.failure)).toEqual(['DNS_TIMEOUT', 'DNS_NXDOMAIN']);
  });
});

describe('console sightings', () => {
  it('writes an address at most once a minute, and keeps its memory bounded', async () => {
    let clock = 0;
    const writes: string[] = [];
    const { log } = captureLogger();
    const sightings = new ConsoleSightings({
      evidence: { recordSighting: async (s) => void writes.push(`${s.role} ${s.address} ${s.at}`) },
      log,
      now: () => clock,
      maxRemembered: 4,
    });
    sightings.note('203.0.113.1');
    sightings.note('203.0.113.1');
    clock += 59_000;
    sightings.note('203.0.113.1');
    sightings.note(undefined);
    clock += 1000;
    sightings.note('203.0.113.1');
    expect(writes).toEqual(['console 203.0.113.1 0', 'console 203.0.113.1 60000']);
    for (let i = 2; i <= 20; i += 1) sightings.note(`203.0.113.${i}`);
    expect(writes).toHaveLength(21);
    expect(sightings.remembered).toBeLessThanOrEqual(4);
  });
});
