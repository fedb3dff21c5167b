// Where Logger clusters write: stdout, stderr or a file opened for appending.

import fs from 'node:fs';

export interface LogSink { write(line: string): void }

/**
 * Where Logger clusters write: one append stream per file, shared by the
 * clusters that name it and closed with the last of them, so a deleted
 * Logger leaves no descriptor behind.
 */
const fileSinks = new Map<string, { sink: LogSink; refs: number; stream: fs.WriteStream }>();

export function isStream(file: string): boolean {
  return file === '-' || file === 'stdout' || file === 'stderr';
}

/** Open (or share) the sink of `file`; throws the open error. */
export function acquireSink(file: string): LogSink {
  if (file === '-' || file === 'stdout') return { write: (l) => process.stdout.write(l) };
  if (file === 'stderr') return { write: (l) => process.stderr.write(l) };
  let s = fileSinks.get(file);
  if (!s) {
    // Append, never truncate: l7mp truncated the file for every session.
    // Opened synchronously, so that a file that cannot be opened refuses the change.
    const fd = fs.openSync(file, 'a', 0o640);
    const stream = fs.createWriteStream(file, { fd, autoClose: true });
    stream.on('error', () => { /* an open file fails only with the disk; the cluster reported the open */ });
    s = { sink: { write: (l) => stream.write(l) }, refs: 0, stream };
    fileSinks.set(file, s);
  }
  s.refs++;
  return s.sink;
}

export function releaseSink(file: string): void {
  const s = fileSinks.get(file);
  if (!s || --s.refs > 0) return;
  fileSinks.delete(file);
  s.stream.end(); // flushes what is queued, then closes the descriptor
}
