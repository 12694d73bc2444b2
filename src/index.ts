/**
 * The library's public surface: what a Node program needs to produce onto
 * and consume from a bus. Everything else (the lock, the publish step, the
 * wait loop, the history window's files) is internal and may change
 * without notice.
 */
export { createProducer, type Producer } from './producer.js';
export { createConsumer, consume, type ConsumeOptions, type Deliver, type MissedChunks } from './consumer.js';
export { status, type BusStatus, type FileStatus } from './status/status.js';
export type { BusOptions, RecordMode } from './options.js';
export { BusError, UsageError } from './errors.js';
