/**
 * Shared plumbing of the two command-line programs: argument parsing with
 * clear usage errors, exit codes, and the one place where errors become a
 * sentence on stderr (stack traces only with --debug).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { describeError, RollcallError } from './errors.js';

/** A usage error: wrong flags or arguments (exit code 2). */
export function usageError(message: string): RollcallError {
  return new RollcallError('USAGE', message);
}

/** Parses argv for one command; unknown flags are usage errors. */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    // Node's own sentence for this case goes on to advise about positional arguments, which only confuses.
    const unknown = (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'([^']+)'/.exec(describeError(err))?.[1] : undefined;
    throw usageError(unknown ? `unknown option "${unknown}"; see --help` : describeError(err));
  }
}

/** Where a CLI writes; a seam for tests. */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** The process's stdout/stderr. */
export const processIo: CliIo = {
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
};

/**
 * Runs a CLI main function and turns its result or error into an exit code.
 * `exitCodeOf` maps error codes to documented exit codes.
 */
export async function runCli(main: () => Promise<number>, io: CliIo, debug: boolean, exitCodeOf: (err: unknown) => number): Promise<number> {
  try {
    return await main();
  } catch (err) {
    const code = err instanceof RollcallError ? ` [${err.code}]` : '';
    io.err(`error: ${describeError(err)}${code}`);
    if (debug && err instanceof Error && err.stack) io.err(err.stack);
    return exitCodeOf(err);
  }
}

/** Renders rows as an aligned text table. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
