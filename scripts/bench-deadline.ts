/**
 * Deadlines for the benchmark: every wait on a server, a socket or a whole
 * phase is bounded, so a stuck run fails with a message that names what
 * was stuck instead of hanging.
 */

/** Resolves or rejects like `work`, but rejects with `message` once `ms` have passed. */
export async function withDeadline<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
