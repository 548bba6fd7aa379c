import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { certificateHosts, DEFAULT_SERVER_CONFIG, resolveServerConfig } from '../config.js';

describe('server configuration', () => {
  it('uses the documented defaults: ./data, 2222, 8443, 60 s', () => {
    const c = resolveServerConfig();
    expect(c).toMatchObject({ dataDir: path.resolve('./data'), agentPort: 2222, consolePort: 8443, checkinIntervalSec: 60, listenHost: '0.0.0.0' });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.publicHosts)).toBe(true);
  });

  it('runs the agent port in the one process unless agent workers are asked for, from 0 to 64', () => {
    expect(resolveServerConfig().agentWorkers).toBe(0);
    expect(resolveServerConfig({}, { ROLLCALL_AGENT_WORKERS: '2' }).agentWorkers).toBe(2);
    expect(resolveServerConfig({ agentWorkers: '3' }, { ROLLCALL_AGENT_WORKERS: '2' }).agentWorkers).toBe(3);
    for (const bad of ['65', '-1', 'two', '1.5']) {
      expect(() => resolveServerConfig({ agentWorkers: bad })).toThrow(/agent workers must be a whole number from 0 to 64/);
    }
  });

  it('takes flags over ROLLCALL_* environment variables over defaults', () => {
    const env = { ROLLCALL_AGENT_PORT: '3000', ROLLCALL_CONSOLE_PORT: '3001', ROLLCALL_PUBLIC_HOST: 'a.example.net, 198.51.100.4', ROLLCALL_DATA_DIR: '/tmp/x' };
    const c = resolveServerConfig({ agentPort: '4000' }, env);
    expect(c).toMatchObject({ agentPort: 4000, consolePort: 3001, dataDir: '/tmp/x', publicHosts: ['a.example.net', '198.51.100.4'] });
    expect(certificateHosts(c)).toEqual(['a.example.net', '198.51.100.4', 'localhost', '127.0.0.1']);
  });

  it('lists every problem at once', () => {
    let err: unknown;
    try {
      resolveServerConfig({ agentPort: '70000', consolePort: 'x', publicHosts: ['bad host'], listenHost: 'nowhere', logLevel: 'loud', checkinIntervalSec: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RollcallError);
    const message = (err as RollcallError).message;
    expect((err as RollcallError).code).toBe('CONFIG_INVALID');
    for (const part of ['agent port', 'console port', 'public host "bad host"', 'listen host', 'log level', 'check-in interval']) expect(message).toContain(part);
  });

  it('refuses the same port for both listeners, and does not change the defaults object', () => {
    expect(() => resolveServerConfig({ agentPort: 9000, consolePort: 9000 })).toThrow(/must differ/);
    expect(DEFAULT_SERVER_CONFIG.agentPort).toBe(2222);
  });

  it('takes the connection limits from flags or the environment, and refuses bad ones', () => {
    const c = resolveServerConfig({ maxPendingHandshakes: '512' }, { ROLLCALL_MAX_AGENTS: '20000' });
    expect(c).toMatchObject({ maxPendingHandshakes: 512, maxAgents: 20_000 });
    expect(resolveServerConfig({}, { ROLLCALL_MAX_PENDING_HANDSHAKES: '64' }).maxPendingHandshakes).toBe(64);
    expect(() => resolveServerConfig({ maxPendingHandshakes: '0' })).toThrow(/max pending handshakes must be a whole number from 1/);
    expect(() => resolveServerConfig({}, { ROLLCALL_MAX_AGENTS: 'lots' })).toThrow(/max agents must be a whole number/);
  });
});
