/** Input files for the lossless parts, and their checksums. */
import { createHash, randomFillSync } from 'node:crypto';
import fs from 'node:fs';

export interface Input {
  file: string;
  bytes: number;
  sha256: string;
}

/** `bytes` random bytes. */
export function randomFile(file: string, bytes: number): Input {
  return writeBlocks(file, bytes, (block) => randomFillSync(block));
}

/**
 * Text lines of exactly `lineBytes` bytes (newline included): with a line
 * length that divides the block size, `--lines` makes the same number of
 * chunks as byte mode, so their chunk rates compare directly.
 */
export function textFile(file: string, bytes: number, lineBytes: number): Input {
  const alphabet = Buffer.from('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789');
  return writeBlocks(file, bytes - (bytes % lineBytes), (block) => {
    randomFillSync(block);
    for (let i = 0; i < block.length; i++) block[i] = (i + 1) % lineBytes === 0 ? 0x0a : alphabet[block[i]! % alphabet.length]!;
  });
}

/** Writes in 1 MiB blocks (a multiple of every line length used here, so lines never straddle blocks). */
function writeBlocks(file: string, bytes: number, fill: (block: Buffer) => void): Input {
  const hash = createHash('sha256');
  const block = Buffer.allocUnsafe(1024 * 1024);
  const fd = fs.openSync(file, 'w');
  try {
    for (let done = 0; done < bytes; ) {
      const piece = block.subarray(0, Math.min(block.length, bytes - done));
      fill(piece);
      hash.update(piece);
      fs.writeSync(fd, piece);
      done += piece.length;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { file, bytes, sha256: hash.digest('hex') };
}

export function sha256OfFile(file: string): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const block = Buffer.allocUnsafe(1024 * 1024);
    for (let n; (n = fs.readSync(fd, block)) > 0; ) hash.update(block.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}
