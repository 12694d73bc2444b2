export { createProducer, produceFrom, Producer } from './producer.js';
export { createConsumer, consume, type ConsumeOptions, type Deliver, type MissedChunks } from './consumer.js';
export { publish } from './bus/publish.js';
export { openBus, type Bus } from './bus/open.js';
export { BusLock } from './bus/lock.js';
export { type BusOptions, type BusPaths, busPaths, defaults } from './options.js';
export { BusError, UsageError } from './errors.js';
