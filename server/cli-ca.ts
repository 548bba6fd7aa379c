/**
 * `rollcall ca [--json]` and `rollcall ca rotate [--overlap 30d] [--json]`:
 * the CA pins and a rotation's cutover, from the console API. The
 * procedure is in docs/operations.md.
 */
import { parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { parseDuration } from '../common/duration.js';
import { connectAdmin } from './admin-client.js';
import type { CaStatus } from './ca-rotation.js';
import { ADMIN_FLAGS, adminTarget, when } from './cli-common.js';

/** Help lines for rollcall --help. */
export const CA_HELP = `  rollcall ca [--json]                       the CA pin, and a running rotation's new pin and cutover
  rollcall ca rotate [--overlap 30d] [--json] new CA; agents learn it over their channel until the cutover`;

function render(s: CaStatus): string {
  const lines = [`CA pin:            ${s.caPin}   (presented on the agent port; use it for new enrollments)`];
  if (s.nextCaPin) {
    lines.push(`rotation:          new CA pin ${s.nextCaPin}, cutover at ${when(s.cutoverAt)}`);
    lines.push('                   connected agents learn the new CA now; agents offline until after the cutover need');
    lines.push(`                   "rollcall-agent repin --ca-pin ${s.nextCaPin}" (or re-enrollment)`);
  } else lines.push('rotation:          none running');
  lines.push(`previous CA:       ${s.previousCaTrusted ? 'still trusted for agent certificates (agents that missed a rotation can repin)' : 'none'}`);
  return lines.join('\n');
}

/** `rollcall ca …`. */
export async function caCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { ...ADMIN_FLAGS, overlap: { type: 'string' } });
  const [sub, ...extra] = positionals;
  if (extra.length > 0 || (sub !== undefined && sub !== 'rotate')) throw usageError('usage: rollcall ca [--json] | rollcall ca rotate [--overlap 30d] [--json]');
  if (sub === undefined && values.overlap !== undefined) throw usageError('--overlap belongs to "rollcall ca rotate"');
  const api = await connectAdmin(adminTarget(values, env));
  const status =
    sub === 'rotate'
      ? await api.call<CaStatus>('POST', '/api/v1/ca/rotate', { overlapSec: Math.max(1, Math.round(parseDuration(values.overlap ?? '30d') / 1000)) })
      : await api.call<CaStatus>('GET', '/api/v1/ca');
  io.out(values.json ? JSON.stringify(status) : render(status));
  return 0;
}
