/**
 * A size-capped, rotating log file for the agent, as a pino destination.
 * Before a write would take the file past `maxBytes`, it is renamed to
 * `<file>.1` (`.1` becomes `.2`, and so on; the oldest beyond `files` is
 * deleted) and a new file is started. A line is never split across files.
 * Writes are synchronous: the agent logs a few lines per connection, and a
 * line written before a crash must be on disk.
 */
import fs from 'node:fs';

/** Defaults: 1 MiB per file, 3 files (the current one and two old ones). */
export const LOG_FILE_DEFAULTS = { maxBytes: 1024 * 1024, files: 3 } as const;

/** The file names of a rotation set, newest first. */
export function rotatedNames(file: string, files: number): string[] {
  return [file, ...Array.from({ length: files - 1 }, (_, i) => `${file}.${i + 1}`)];
}

/** A pino destination that appends to a file and rotates it by size. */
export class RotatingLogFile {
  private fd: number;
  private size: number;
  private failed = false;

  constructor(
    readonly file: string,
    private readonly maxBytes: number = LOG_FILE_DEFAULTS.maxBytes,
    private readonly files: number = LOG_FILE_DEFAULTS.files,
    /** Told once when the file cannot be written (a full disk): logging to stdout goes on. */
    private readonly onError: (err: Error) => void = () => undefined,
  ) {
    this.fd = fs.openSync(file, 'a', 0o600);
    this.size = fs.fstatSync(this.fd).size;
  }

  /** Appends one chunk (pino writes one line per call). */
  write(chunk: string): boolean {
    const bytes = Buffer.byteLength(chunk);
    try {
      if (this.size > 0 && this.size + bytes > this.maxBytes) this.rotate();
      fs.writeSync(this.fd, chunk);
      this.size += bytes;
      this.failed = false;
    } catch (err) {
      const first = !this.failed;
      this.failed = true;
      if (first) this.onError(err as Error);
    }
    return true;
  }

  private rotate(): void {
    fs.closeSync(this.fd);
    const names = rotatedNames(this.file, this.files);
    if (names.length === 1) {
      this.fd = fs.openSync(this.file, 'w', 0o600);
    } else {
      fs.rmSync(names[names.length - 1]!, { force: true });
      for (let i = names.length - 2; i >= 0; i -= 1) {
        if (fs.existsSync(names[i]!)) fs.renameSync(names[i]!, names[i + 1]!);
      }
      this.fd = fs.openSync(this.file, 'a', 0o600);
    }
    this.size = 0;
  }

  /** Closes the file. */
  close(): void {
    fs.closeSync(this.fd);
  }
}
