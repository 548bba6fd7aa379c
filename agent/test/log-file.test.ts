import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import { AGENT_EXIT, agentMain } from '../cli.js';
import { readConfigFile, resolveRunConfig } from '../config.js';
import { RotatingLogFile, rotatedNames } from '../log-file.js';

const h = new Harness();
afterEach(() => h.cleanup());

const line = (i: number): string => `${JSON.stringify({ seq: i, msg: 'x'.repeat(70) })}\n`;

async function lines(file: string): Promise<number[]> {
  const text = await fs.readFile(file, 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { seq: number }).seq);
}

describe('the rotating log file', () => {
  it('rotates by size, keeps the newest lines in order across at most N files, and never splits a line', async () => {
    const dir = await h.tempDir();
    const file = path.join(dir, 'agent.log');
    const log = new RotatingLogFile(file, 1000, 3);
    for (let i = 0; i < 100; i += 1) log.write(line(i));
    log.close();
    expect((await fs.readdir(dir)).sort()).toEqual(['agent.log', 'agent.log.1', 'agent.log.2']);
    const kept: number[] = [];
    for (const f of rotatedNames(file, 3).reverse()) {
      expect((await fs.stat(f)).size).toBeLessThanOrEqual(1000);
      kept.push(...(await lines(f)));
    }
    expect(kept[kept.length - 1]).toBe(99);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 100 - kept.length + i));
    expect(kept.length).toBeGreaterThan(20);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
  });

  it('counts what an earlier run left in the file, and with one file starts it over', async () => {
    const dir = await h.tempDir();
    const file = path.join(dir, 'agent.log');
    await fs.writeFile(file, line(0).repeat(11)); // 979 bytes: the next line does not fit
    const log = new RotatingLogFile(file, 1000, 1);
    log.write(line(1));
    log.write(line(2));
    log.close();
    expect(await fs.readdir(dir)).toEqual(['agent.log']);
    expect(await lines(file)).toEqual([1, 2]);
  });

  it('reports a file it cannot rotate once, throws nothing, and keeps going', async () => {
    const dir = path.join(await h.tempDir(), 'logs');
    await fs.mkdir(dir);
    const errors: Error[] = [];
    const log = new RotatingLogFile(path.join(dir, 'agent.log'), 1000, 2, (err) => errors.push(err));
    await fs.rm(dir, { recursive: true });
    for (let i = 0; i < 40; i += 1) expect(log.write(line(i))).toBe(true);
    expect(errors.length).toBe(1);
    expect((errors[0] as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
});

describe('log and config options of rollcall-agent', () => {
  it('logs to <state-dir>/agent.log, 1 MiB x 3, by default; --log-file none turns it off', () => {
    const c = resolveRunConfig({ 'state-dir': '/tmp/st' }, {});
    expect(c).toMatchObject({ logFile: '/tmp/st/agent.log', logMaxBytes: 1024 * 1024, logFiles: 3, configProxy: null, proxy: undefined });
    expect(resolveRunConfig({ 'state-dir': '/tmp/st', 'log-file': 'none' }, {}).logFile).toBeNull();
    expect(resolveRunConfig({ 'state-dir': '/tmp/st', 'log-max-bytes': '512KiB', 'log-files': '5' }, { ROLLCALL_AGENT_LOG_FILE: '/var/log/ra.log' })).toMatchObject({
      logFile: '/var/log/ra.log',
      logMaxBytes: 512 * 1024,
      logFiles: 5,
    });
  });

  it('lists every bad log option at once', () => {
    expect(() => resolveRunConfig({ 'log-max-bytes': '10', 'log-files': '0' }, {})).toThrow(/--log-max-bytes must be from 64KiB[\s\S]*--log-files must be a whole number from 1 to 20/);
    expect(() => resolveRunConfig({ 'log-max-bytes': 'lots' }, {})).toThrow(/--log-max-bytes/);
  });

  it('reads the proxy from the config file and refuses a bad one, naming the file', async () => {
    const dir = await h.tempDir();
    const file = path.join(dir, 'agent.json');
    await fs.writeFile(file, JSON.stringify({ proxy: "http://o'brien:p$a%40ss@10.0.0.1:3128" }));
    expect(resolveRunConfig({ config: file }, {})).toMatchObject({ configProxy: "http://o'brien:p$a%40ss@10.0.0.1:3128", proxy: { host: '10.0.0.1', port: 3128 } });
    expect(resolveRunConfig({}, { ROLLCALL_AGENT_CONFIG: file }).proxy).toMatchObject({ host: '10.0.0.1', port: 3128 });
    // --proxy and ROLLCALL_AGENT_PROXY come before the config file.
    expect(resolveRunConfig({ config: file, proxy: 'http://127.0.0.2:8080' }, {}).proxy).toMatchObject({ host: '127.0.0.2', port: 8080 });
    expect(resolveRunConfig({ config: file }, { ROLLCALL_AGENT_PROXY: 'http://127.0.0.3:8080' }).proxy).toMatchObject({ host: '127.0.0.3', port: 8080 });
    for (const [body, words] of [
      ['{"proxy": "socks5://x:1"}', '"proxy" must be http://'],
      ['{"proxy": "http://x:1", "colour": "red"}', 'unknown key "colour"'],
      ['[1]', 'must hold a JSON object'],
      ['{not json', 'cannot read the config file'],
    ] as const) {
      await fs.writeFile(file, body);
      expect(() => readConfigFile(file), body).toThrow(words);
    }
    expect(() => readConfigFile(path.join(dir, 'missing.json'))).toThrow(/cannot read the config file .*missing\.json/);
  });

  it('run writes its lines to the log file too (a revoked agent: its last words are in the file)', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`, {});
    const code = await agentMain(['run', '--state-dir', agent.state.dir, '--backoff-base', '50ms', '--backoff-cap', '200ms'], {}, { out: () => undefined, err: () => undefined });
    expect(code).toBe(AGENT_EXIT.REFUSED_FOR_GOOD);
    const text = await fs.readFile(path.join(agent.state.dir, 'agent.log'), 'utf8');
    const last = JSON.parse(text.trim().split('\n').pop()!) as { msg: string; program: string; code: string };
    expect(last).toMatchObject({ program: 'rollcall-agent', msg: 'the server refused this agent for good; re-enroll it' });
  });
});
