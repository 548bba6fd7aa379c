import { describe, expect, it } from 'vitest';
import { RollcallError } from '../errors.js';
import { agentMessageDecoder, encode, serverMessageDecoder, type Hello } from '../protocol.js';

const hello: Hello = {
  type: 'hello',
  protocol: 1,
  deviceId: 'dev_1',
  agentVersion: '0.1.0',
  hostname: 'pc-1',
  fingerprint: 'f'.repeat(64),
  inventory: { os: 'Linux', release: '6.1', arch: 'x64', cpus: 4, memoryBytes: 8e9 },
  lastSeq: 0,
};

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RollcallError);
    return `${(err as RollcallError).code}: ${(err as RollcallError).message}`;
  }
  throw new Error('expected a throw');
}

describe('protocol codec', () => {
  const agent = agentMessageDecoder();
  const server = serverMessageDecoder();

  it('round-trips every agent and server message through encode and decode', () => {
    expect(agent.decode(encode(hello))).toEqual(hello);
    const checkin = { type: 'checkin', seq: 5, sentAt: 1, uptimeSec: 2.5, load1: 0.1 } as const;
    expect(agent.decode(Buffer.from(encode(checkin)))).toEqual(checkin);
    const welcome = { type: 'welcome', protocol: 1, deviceId: 'dev_1', intervalSec: 60, group: { id: 'grp_all', path: 'All' }, serverTime: 5, lastSeq: 3 } as const;
    expect(server.decode(encode(welcome))).toEqual(welcome);
    expect(server.decode('{"type":"ack","seq":1}')).toEqual({ type: 'ack', seq: 1 });
    expect(server.decode('{"type":"config","intervalSec":30}')).toEqual({ type: 'config', intervalSec: 30 });
    expect(server.decode('{"type":"error","code":"X","message":"m","retryAfterMs":5}')).toMatchObject({ code: 'X' });
  });

  it('rejects frames that are not JSON objects with MALFORMED_FRAME', () => {
    expect(codeOf(() => agent.decode('not json'))).toMatch(/^MALFORMED_FRAME: frame is not valid JSON/);
    expect(codeOf(() => agent.decode('[1,2]'))).toMatch(/not a JSON object/);
    expect(codeOf(() => agent.decode('null'))).toMatch(/not a JSON object/);
    expect(codeOf(() => agent.decode('{"seq":1}'))).toMatch(/no string "type"/);
  });

  it('names an unknown type, and does not accept server messages from agents', () => {
    expect(codeOf(() => agent.decode('{"type":"launch"}'))).toMatch(/unknown message type "launch"/);
    expect(codeOf(() => agent.decode('{"type":"ack","seq":1}'))).toMatch(/unknown message type "ack"/);
    expect(codeOf(() => server.decode(encode(hello)))).toMatch(/unknown message type "hello"/);
  });

  it('rejects missing, mistyped, out-of-range and extra fields, saying where', () => {
    const { fingerprint: _omit, ...noFingerprint } = hello;
    expect(codeOf(() => agent.decode(JSON.stringify(noFingerprint)))).toMatch(/invalid "hello" message: \/ must have required property 'fingerprint'/);
    expect(codeOf(() => agent.decode(JSON.stringify({ ...hello, protocol: '1' })))).toMatch(/\/protocol must be integer/);
    expect(codeOf(() => agent.decode(JSON.stringify({ ...hello, deviceId: 'a b' })))).toMatch(/\/deviceId must match pattern/);
    expect(codeOf(() => agent.decode(JSON.stringify({ ...hello, extra: 1 })))).toMatch(/must NOT have additional properties/);
    expect(codeOf(() => agent.decode('{"type":"checkin","seq":0,"sentAt":1,"uptimeSec":1}'))).toMatch(/\/seq must be >= 1/);
    expect(codeOf(() => agent.decode('{"type":"checkin","seq":1.5,"sentAt":1,"uptimeSec":1}'))).toMatch(/\/seq must be integer/);
  });

  it('truncates a long unknown type name in the error', () => {
    const msg = codeOf(() => agent.decode(JSON.stringify({ type: 'x'.repeat(500) })));
    expect(msg.length).toBeLessThan(120);
  });
});
