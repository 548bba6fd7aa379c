/**
 * `rollcall questions [--all] [--json]`, `rollcall questions show ID` and
 * `rollcall questions answer ID RESOLUTION` (docs/questions.md).
 */
import { formatTable, parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { connectAdmin } from './admin-client.js';
import { ADMIN_FLAGS, adminTarget, when } from './cli-common.js';
import type { QuestionView } from './questions-api.js';

/** Help lines for `rollcall --help`. */
export const QUESTIONS_HELP = `  rollcall questions [--all] [--json]          clones and hardware changes waiting for an answer
  rollcall questions show QUESTION_ID [--json]   with the device's history
  rollcall questions answer QUESTION_ID RESOLUTION
    clone: match_existing | match_existing_always | create_new | create_new_always
    hardware_change: accept_change | accept_every_change | create_new`;

const short = (fp: string | null): string => (fp ? `${fp.slice(0, 12)}…` : '-');

/** `rollcall questions …`. */
export async function questionsCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { ...ADMIN_FLAGS, all: { type: 'boolean' } });
  const [sub, id, resolution, extra] = positionals;
  const api = await connectAdmin(adminTarget(values, env));
  if (sub === undefined || sub === 'list') {
    const { questions } = await api.call<{ questions: QuestionView[] }>('GET', `/api/v1/questions?state=${values.all ? 'all' : 'open'}`);
    if (values.json) io.out(JSON.stringify({ questions }));
    else if (questions.length === 0) io.out(values.all ? 'no questions' : 'no open questions');
    else
      io.out(
        formatTable(
          ['ID', 'KIND', 'DEVICE', 'HOSTNAME', 'RAISED', 'SEEN', 'FINGERPRINT OLD -> NEW', 'ADDRESS OLD -> NEW', 'ANSWER'],
          questions.map((q) => [
            q.id,
            q.kind,
            q.deviceId,
            q.hostname ?? '-',
            when(q.raisedAt),
            String(q.timesSeen),
            `${short(q.oldFingerprint)} -> ${short(q.newFingerprint)}`,
            `${q.oldAddress ?? '-'} -> ${q.newAddress ?? '-'}`,
            q.resolution ?? `one of ${q.resolutions.join(', ')}`,
          ]),
        ),
      );
    return 0;
  }
  if (!id) throw usageError(`questions ${sub} needs QUESTION_ID`);
  if (sub === 'show') {
    const q = await api.call<QuestionView & { history: { at: string; event: string; questionId: string | null; detail: Record<string, unknown> }[] }>('GET', `/api/v1/questions/${encodeURIComponent(id)}`);
    if (values.json) io.out(JSON.stringify(q));
    else {
      const { history, ...rest } = q;
      io.out(Object.entries(rest).map(([k, v]) => `${k.padEnd(16)}${Array.isArray(v) ? v.join(', ') || '-' : (v ?? '-')}`).join('\n'));
      io.out(`\nhistory of ${q.deviceId}:\n${history.map((e) => `  ${when(e.at)}  ${e.event}${e.questionId ? ` (${e.questionId})` : ''}  ${JSON.stringify(e.detail)}`).join('\n')}`);
    }
    return 0;
  }
  if (sub === 'answer') {
    if (!resolution || extra !== undefined) throw usageError('questions answer needs QUESTION_ID RESOLUTION');
    const q = await api.call<QuestionView>('POST', `/api/v1/questions/${encodeURIComponent(id)}/answer`, { resolution });
    io.out(values.json ? JSON.stringify(q) : `question ${q.id} (${q.kind} of ${q.deviceId}) answered: ${q.resolution}`);
    return 0;
  }
  throw usageError(`unknown questions command "${sub}"`);
}
