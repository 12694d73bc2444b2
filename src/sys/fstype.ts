/**
 * Which file system a directory is on, and whether other hosts or processes
 * can change it behind this kernel's back. On such a file system inotify
 * reports only what this host does through this mount: a chunk published
 * from another machine (NFS, SMB, Ceph...) or through another view of the
 * same files (a FUSE daemon serving a directory that is also written
 * directly) raises no event here, so only the `--sleep-interval` poll sees
 * it (docs/network-filesystems.md).
 */
import fs from 'node:fs';

export interface FileSystemKind {
  /** A short name (`nfs`, `fuse`, `tmpfs`...), or the magic number in hex when unknown. */
  readonly name: string;
  /** True when writers elsewhere can change files here without an inotify event on this host. */
  readonly shared: boolean;
}

/**
 * `f_type` magic numbers from statfs(2) and linux/magic.h. FUSE covers every
 * FUSE file system at once (sshfs, s3fs, glusterfs, virtiofs, bindfs...):
 * the daemon behind it may serve files it does not alone control.
 */
const sharedTypes = new Map<number, string>([
  [0x6969, 'nfs'],
  [0x517b, 'smb'],
  [0xff534d42, 'cifs'],
  [0xfe534d42, 'smb2'],
  [0x65735546, 'fuse'],
  [0x00c36400, 'ceph'],
  [0x01021997, '9p'],
  [0x5346414f, 'afs'],
  [0x6b414653, 'kafs'],
  [0x73757245, 'coda'],
  [0x564c, 'ncpfs'],
  [0x01161970, 'gfs2'],
  [0x7461636f, 'ocfs2'],
  [0x0bd00bd0, 'lustre'],
  [0x47504653, 'gpfs'],
  [0x19830326, 'beegfs'],
  [0xaad7aaea, 'panfs'],
  [0x20030528, 'orangefs'],
  [0x786f4256, 'vboxsf'],
  [0xbacbacbc, 'vmhgfs'],
]);

/** A few local types by name, so that a notice can say what the bus is on. */
const localTypes = new Map<number, string>([
  [0x01021994, 'tmpfs'],
  [0xef53, 'ext4'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x2fc12fc1, 'zfs'],
  [0x794c7630, 'overlay'],
  [0x858458f6, 'ramfs'],
]);

/** The file system `dir` is on; throws what statfs throws (ENOENT...). */
export function fileSystemOf(dir: string): FileSystemKind {
  // f_type is a signed long in C; normalize so 0xff534d42 compares equal on every platform.
  const type = Number(fs.statfsSync(dir).type) >>> 0;
  const shared = sharedTypes.get(type);
  if (shared !== undefined) return { name: shared, shared: true };
  return { name: localTypes.get(type) ?? `0x${type.toString(16)}`, shared: false };
}
