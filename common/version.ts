/**
 * Version numbers shared by the server and the agent.
 *
 * PROTOCOL_VERSION is bumped whenever a message gains, loses or changes a
 * field in a way an older peer cannot ignore; docs/protocol.md keeps the
 * dated history of each bump.
 */

/** The wire protocol version this build speaks. */
export const PROTOCOL_VERSION = 4;

/** Oldest protocol version the server still accepts in `hello`. */
export const MIN_PROTOCOL_VERSION = 1;

/** Version of this Rollcall build (server and agent ship together). */
export const ROLLCALL_VERSION = '0.1.0';
