import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import { CLI_EXIT, rollcallMain } from '../cli.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await rollcallMain(argv, {}, { out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`) });
  return { code, out, err };
}

describe('rollcall ca', () => {
  it('shows the pin, starts a rotation with an overlap, shows its new pin and cutover, and refuses a second one', async () => {
    const s = await h.startServer();
    await s.server.writeLocalCliCredentials();
    const d = ['--data-dir', s.dataDir];
    const before = await run(['ca', ...d]);
    expect(before.code).toBe(0);
    expect(before.out).toContain(`CA pin:            ${s.server.pki.caPin}`);
    expect(before.out).toContain('rotation:          none running');

    const started = Date.now();
    const rotated = await run(['ca', 'rotate', '--overlap', '2h', '--json', ...d]);
    expect(rotated.code, rotated.err).toBe(0);
    const status = JSON.parse(rotated.out) as { caPin: string; nextCaPin: string; cutoverAt: string };
    expect(status.caPin).toBe(s.server.pki.caPin); // still presented during the overlap
    expect(status.nextCaPin).toBe(s.server.pki.next!.caPin);
    expect(Date.parse(status.cutoverAt) - started).toBeGreaterThanOrEqual(2 * 3_600_000 - 1000);
    expect(Date.parse(status.cutoverAt) - Date.now()).toBeLessThanOrEqual(2 * 3_600_000);

    const human = await run(['ca', ...d]);
    expect(human.out).toContain(`rollcall-agent repin --ca-pin ${status.nextCaPin}`);
    const again = await run(['ca', 'rotate', ...d]);
    expect(again.code).toBe(CLI_EXIT.REFUSED);
    expect(again.err).toContain('[CA_ROTATION_RUNNING]');
    expect((await run(['ca', 'spin', ...d])).code).toBe(CLI_EXIT.USAGE);
    expect((await run(['ca', 'rotate', '--overlap', 'soon', ...d])).code).toBe(CLI_EXIT.USAGE);
  });
});
