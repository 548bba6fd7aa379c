/**
 * HTTP CONNECT proxies: enrollment and the check-in channel through a real
 * (in-test) proxy on 127.0.0.1, with and without basic authentication;
 * wrong credentials, refusals and garbage give clear errors; `status`
 * shows the path in use.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseProxyUrl } from '../../common/http-proxy.js';
import { startConnectProxy, type TestProxy } from '../../test/support/connect-proxy.js';
import { Harness, waitFor, type TestServer } from '../../test/support/harness.js';
import { agentMain } from '../cli.js';
import { enrollAgent } from '../enroll.js';
import { AgentState } from '../state.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function proxy(auth?: string): Promise<TestProxy> {
  const p = await startConnectProxy({ auth });
  h.defer(() => p.close());
  return p;
}

async function enrollThrough(s: TestServer, proxyUrl: string): Promise<AgentState> {
  const state = new AgentState(await h.tempDir('rollcall-agent-'));
  await enrollAgent({ servers: [s.agentAddress], caPin: s.server.pki.caPin, token: await s.enrollmentToken(), state, fingerprint: 'b'.repeat(64), proxy: proxyUrl, timeoutMs: 3000 });
  return state;
}

async function run(state: AgentState, proxyUrl: string) {
  return (await h.runAgent({ state, fingerprint: 'b'.repeat(64) }, { proxy: parseProxyUrl(proxyUrl) })).running;
}

describe('HTTP CONNECT proxies', () => {
  it('enrolls and checks in through a proxy without authentication, and status shows the path', async () => {
    const s = await h.startServer();
    const p = await proxy();
    const state = await enrollThrough(s, `http://127.0.0.1:${p.port}`);
    expect(p.tunnels.length).toBe(2); // the pinned CA fetch and the enrollment request
    expect((await state.loadCredentials()).identity.proxy).toBe(`http://127.0.0.1:${p.port}`);
    const running = await run(state, `http://127.0.0.1:${p.port}`);
    await waitFor(() => running.status.status.lastAckedSeq >= 2, 'check-ins through the proxy', 10_000);
    expect(running.status.status).toMatchObject({ state: 'connected', server: s.agentAddress, path: `proxy 127.0.0.1:${p.port}` });
    expect(p.tunnels.every((t) => t === s.agentAddress)).toBe(true);
    expect(p.tunnels.length).toBe(3);
    const onDisk = await waitFor(async () => {
      const st = await state.readStatus<{ path: string; lastSuccessAt: string | null }>();
      return st?.lastSuccessAt ? st : undefined;
    }, 'the status file');
    expect(onDisk.path).toBe(`proxy 127.0.0.1:${p.port}`);
  });

  it('goes through a proxy that requires basic authentication, with credentials from the URL', async () => {
    const s = await h.startServer();
    const p = await proxy('agent:s3cr%t');
    const url = `http://agent:${encodeURIComponent('s3cr%t')}@127.0.0.1:${p.port}`;
    const state = await enrollThrough(s, url);
    const running = await run(state, url);
    await waitFor(() => running.status.status.lastAckedSeq >= 1, 'a check-in through the authenticating proxy', 10_000);
    expect(p.authFailures).toBe(0);
    expect(running.status.status.path).toBe(`proxy 127.0.0.1:${p.port}`); // no password in status
  });

  it('says the proxy wants credentials (407) when they are missing or wrong, at enrollment and while running', async () => {
    const s = await h.startServer();
    const p = await proxy('agent:right');
    const state = new AgentState(await h.tempDir('rollcall-agent-'));
    const token = await s.enrollmentToken();
    const base = { servers: [s.agentAddress], caPin: s.server.pki.caPin, token, state, fingerprint: 'b'.repeat(64), timeoutMs: 3000 };
    await expect(enrollAgent({ ...base, proxy: `http://127.0.0.1:${p.port}` })).rejects.toMatchObject({ code: 'PROXY_AUTH_REQUIRED', message: expect.stringMatching(/requires authentication/) });
    await expect(enrollAgent({ ...base, proxy: `http://agent:wrong@127.0.0.1:${p.port}` })).rejects.toMatchObject({ code: 'PROXY_AUTH_REQUIRED', message: expect.stringMatching(/refused the credentials/) });
    expect(await state.isEnrolled()).toBe(false);

    const good = await enrollThrough(s, `http://agent:right@127.0.0.1:${p.port}`);
    const running = await run(good, `http://agent:wrong@127.0.0.1:${p.port}`);
    const st = await waitFor(() => (running.status.status.lastError?.code === 'PROXY_AUTH_REQUIRED' ? running.status.status : undefined), 'the 407 in status');
    expect(st.lastError).toMatchObject({ class: 'PROXY', remedy: expect.stringMatching(/user:password@host:port/) });
    expect(st.state).toBe('backoff');
  });

  it('reports a proxy that refuses the tunnel, answers garbage, or is not there', async () => {
    const s = await h.startServer();
    const p = await proxy();
    const state = await enrollThrough(s, `http://127.0.0.1:${p.port}`);
    p.mode = 'refuse';
    const running = await run(state, `http://127.0.0.1:${p.port}`);
    await waitFor(() => running.status.status.lastError?.code === 'PROXY_REFUSED', 'PROXY_REFUSED in status');
    expect(running.status.status.lastError!.message).toMatch(/refused CONNECT to 127\.0\.0\.1:\d+ \(HTTP 403\)/);
    p.mode = 'garbage';
    await waitFor(() => running.status.status.lastError?.code === 'PROXY_BAD_RESPONSE', 'PROXY_BAD_RESPONSE in status');
    await p.close();
    await waitFor(() => running.status.status.lastError?.code === 'PROXY_UNREACHABLE', 'PROXY_UNREACHABLE in status');
    expect(s.server.registry.size).toBe(0);
  });

  it('refuses a proxy that is not http://[user:password@]host:port', async () => {
    for (const bad of ['https://proxy:3128', 'proxy:3128', 'http://', 'http://proxy:3128/path', 'socks5://proxy:1080']) {
      expect(() => parseProxyUrl(bad), bad).toThrow(expect.objectContaining({ code: 'PROXY_INVALID' }));
    }
    expect(parseProxyUrl('http://u:p%40ss@[::1]:8080')).toMatchObject({ host: '::1', port: 8080, auth: { user: 'u', password: 'p@ss' }, display: '[::1]:8080' });
    expect(parseProxyUrl('http://proxy.example')).toMatchObject({ port: 3128, auth: null });
    const out: string[] = [];
    const err: string[] = [];
    const code = await agentMain(['run', '--proxy', 'ftp://x', '--state-dir', await h.tempDir()], {}, { out: (t) => out.push(t), err: (t) => err.push(t) });
    expect(code).toBe(2);
    expect(err.join()).toMatch(/--proxy: a proxy is given as http:/);
  });
});
