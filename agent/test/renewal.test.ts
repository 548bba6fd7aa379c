/**
 * Certificate renewal over the live channel, end to end against a real
 * server: a short-lived certificate is renewed before it expires, the new
 * one is used from the next connection on, and the old one stops working
 * only then. A renewed certificate the server refuses is dropped and the
 * current one kept.
 */
import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { certInfo, createCsr, generateKeyPair, issueClientCert } from '../../common/pki.js';
import { Harness, readTestCa, waitFor, type EnrolledAgent } from '../../test/support/harness.js';
import { renewAt } from '../renewal.js';

const h = new Harness();
afterEach(() => h.cleanup());

const run = (agent: EnrolledAgent) => h.runAgent(agent);

describe('certificate renewal', () => {
  it('starts a third of the lifetime before expiry, and never earlier than 30 days before', () => {
    const from = new Date('2026-01-01T00:00:00Z');
    expect(renewAt(from, new Date('2026-01-01T00:00:09Z'))).toBe(Date.parse('2026-01-01T00:00:06Z'));
    expect(renewAt(from, new Date('2028-01-01T00:00:00Z'))).toBe(Date.parse('2027-12-02T00:00:00Z'));
  });

  it('renews a short-lived certificate over the channel, switches to it, and only then is the old one refused', async () => {
    const s = await h.startServer({ agentCertValiditySec: 10 });
    const agent = await s.enrollAgent();
    const oldSerial = certInfo(agent.certPem).serial;
    const { running, lines } = await run(agent);
    await waitFor(() => running.status.status.lastAckedSeq >= 1, 'a first ack', 10_000);
    const device = await s.server.storage.devices.get(agent.deviceId);
    expect(device!.certSerial).toBe(oldSerial);

    const renewed = await waitFor(() => {
      const c = running.status.status.certificate;
      return c && c.serial !== oldSerial && running.status.status.state === 'connected' ? c : undefined;
    }, 'the agent to connect with a renewed certificate', 15_000);
    expect((await s.server.storage.devices.get(agent.deviceId))!.certSerial).toBe(renewed.serial);
    expect(certInfo(await fs.readFile(agent.state.file('cert'), 'utf8')).serial).toBe(renewed.serial);
    await expect(fs.stat(agent.state.file('nextCert'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fs.stat(agent.state.file('nextKey'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(lines.some((l) => l.msg === 'renewed certificate in use; the old one was removed')).toBe(true);
    expect(s.logs.some((l) => l.msg === 'renewed certificate in use; the old one is no longer accepted' && l.deviceId === agent.deviceId)).toBe(true);

    // The old certificate (still within its validity) maps to no device any more.
    const old = await s.rawClient({ keyPem: agent.keyPem, certPem: agent.certPem });
    expect(await old.waitRefusal()).toMatchObject({ status: 403, body: { error: { code: 'DEVICE_UNKNOWN' } } });
    const before = running.status.status.lastAckedSeq;
    await waitFor(() => running.status.status.lastAckedSeq > before + 1, 'check-ins with the new certificate', 10_000);
  });

  it('drops a renewed certificate the server refuses and goes on with the current one', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const foreign = await readTestCa('foreign-ca');
    const keys = generateKeyPair(2048);
    const bogus = issueClientCert(foreign, { publicKeyPem: keys.publicKeyPem, deviceId: agent.deviceId });
    await agent.state.saveRenewed(keys.privateKeyPem, bogus.certPem);
    const { running, lines } = await run(agent);
    await waitFor(() => running.status.status.lastAckedSeq >= 1, 'a first ack with the current certificate', 10_000);
    expect(running.status.status.certificate!.serial).toBe(certInfo(agent.certPem).serial);
    await expect(fs.stat(agent.state.file('nextCert'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(lines.some((l) => l.msg === 'the server refused the renewed certificate; going back to the current one')).toBe(true);
  });

  it('answers a renewal with a bad CSR with an error frame and keeps the channel', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const client = await s.rawClient(agent);
    await client.open();
    client.hello(agent.deviceId);
    await client.waitMessage('welcome');
    client.send({ type: 'renew', csr: 'not a csr' });
    expect(await client.waitMessage('error')).toMatchObject({ code: 'CSR_MALFORMED' });
    const weak = createCsr(generateKeyPair(1024).privateKeyPem, agent.deviceId);
    const from = client.messages.length;
    client.send({ type: 'renew', csr: weak });
    expect(await client.waitMessage('error', 5000, from)).toMatchObject({ code: 'CSR_WEAK_KEY' });
    client.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 1 });
    expect(await client.waitMessage('ack')).toEqual({ type: 'ack', seq: 1 });
    expect(await s.server.storage.certRenewals.find('0')).toBeUndefined();
  });
});
