import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  checkWritableTarget,
  readFileOrPipeSync,
  readRegularFile,
  readRegularFileSync,
  UnsafeFileError,
  writeRegularFile,
  type ReadRegularFileOptions,
} from '../../src/util/safe-file.js';

let dir: string;
let socketServer: net.Server;
let socketPath: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bearer-sidecar-safe-file-'));
  socketPath = path.join(dir, 'socket');
  socketServer = net.createServer();
  await new Promise<void>((resolve) => socketServer.listen(socketPath, resolve));
});

afterAll(async () => {
  await new Promise<void>((resolve) => socketServer.close(() => resolve()));
  fs.rmSync(dir, { recursive: true, force: true });
});

let count = 0;
function fresh(name: string): string {
  count += 1;
  return path.join(dir, `${count}-${name}`);
}

function fileWith(content: string | Buffer): string {
  const file = fresh('file');
  fs.writeFileSync(file, content, { mode: 0o600 });
  return file;
}

function fifo(): string {
  const file = fresh('fifo');
  execFileSync('mkfifo', [file]);
  return file;
}

const KIB = 1024;
const options: ReadRegularFileOptions = { maxBytes: 4 * KIB };

/** Both readers, so every rule is checked for the synchronous (config time) and the asynchronous (run time) one. */
const readers = [
  {
    name: 'readRegularFile',
    read: (file: string, opts: ReadRegularFileOptions = options) => readRegularFile(file, opts),
  },
  {
    name: 'readRegularFileSync',
    read: async (file: string, opts: ReadRegularFileOptions = options) => readRegularFileSync(file, opts),
  },
];

async function refusal(read: () => Promise<Buffer>): Promise<UnsafeFileError> {
  try {
    await read();
  } catch (error) {
    expect(error).toBeInstanceOf(UnsafeFileError);
    return error as UnsafeFileError;
  }
  throw new Error('expected the file to be refused');
}

for (const { name, read } of readers) {
  describe(`${name} (R5)`, () => {
    it('R5: reads a regular file whole', async () => {
      const file = fileWith('hello\n');
      expect((await read(file)).toString('utf8')).toBe('hello\n');
    });

    it('R5: a FIFO is refused at once, naming the path, and never blocks (no writer ever comes)', async () => {
      const file = fifo();
      const error = await refusal(() => read(file));
      expect(error.message).toBe(`${file} is a FIFO, not a regular file`);
      expect(error).toMatchObject({ reason: 'not_regular', path: file });
    });

    it('R5: a directory is refused, naming the path', async () => {
      const file = fresh('dir');
      fs.mkdirSync(file);
      expect((await refusal(() => read(file))).message).toBe(`${file} is a directory, not a regular file`);
    });

    it('R5: a socket is refused, naming the path', async () => {
      expect((await refusal(() => read(socketPath))).message).toBe(`${socketPath} is a socket, not a regular file`);
    });

    it('R5: a device like /dev/null or /dev/zero is refused, naming the path', async () => {
      expect((await refusal(() => read('/dev/null'))).message).toBe(
        '/dev/null is a character device, not a regular file',
      );
      // A symlink to a device is judged by what it points to (the type is checked on the opened file).
      const link = fresh('zero-link');
      fs.symlinkSync('/dev/zero', link);
      expect((await refusal(() => read(link))).message).toBe(`${link} is a character device, not a regular file`);
    });

    it('R5: a symlink to a regular file is followed (Kubernetes mounts secrets so: ..data swaps)', async () => {
      const target = fileWith('through the link');
      const link = fresh('link');
      fs.symlinkSync(target, link);
      expect((await read(link)).toString('utf8')).toBe('through the link');
    });

    it('R5: with followSymlinks false, a symlink is refused, naming the path', async () => {
      const link = fresh('link');
      fs.symlinkSync(fileWith('x'), link);
      const error = await refusal(() => read(link, { ...options, followSymlinks: false }));
      expect(error).toMatchObject({ reason: 'symlink', path: link });
      expect(error.message).toBe(
        `${link} is a symbolic link; it is not followed here: point the setting at the file itself`,
      );
    });

    it('R5: a file of exactly maxBytes is read; one byte more is refused as too large', async () => {
      expect((await read(fileWith(Buffer.alloc(4 * KIB, 1)))).length).toBe(4 * KIB);
      const file = fileWith(Buffer.alloc(4 * KIB + 1, 1));
      const error = await refusal(() => read(file));
      expect(error).toMatchObject({ reason: 'too_large', path: file });
      expect(error.message).toBe(`${file} is larger than 4 KiB`);
    });

    it('R5: a huge (sparse) file is refused from its size alone', async () => {
      const file = fileWith('');
      fs.truncateSync(file, 2 * 1024 * 1024 * 1024);
      expect((await refusal(() => read(file))).reason).toBe('too_large');
    });

    it('a missing file is reason missing, with the errno code', async () => {
      const file = fresh('missing');
      const error = await refusal(() => read(file));
      expect(error).toMatchObject({ code: 'BS_ERR_UNSAFE_FILE', reason: 'missing', errno: 'ENOENT', path: file });
      expect(error.message).toBe(`cannot read ${file} (ENOENT)`);
    });
  });
}

describe('R5 readRegularFile: a FIFO never blocks the thread pool', () => {
  const writers: Array<ReturnType<typeof spawn>> = [];
  afterEach(() => {
    for (const writer of writers.splice(0)) writer.kill('SIGKILL');
  });

  it('R5: twenty FIFOs read at once (more than libuv has threads) are all refused, and a regular file still reads', async () => {
    const fifos = Array.from({ length: 20 }, () => fifo());
    const results = await Promise.allSettled(fifos.map((file) => readRegularFile(file, options)));
    expect(results.every((result) => result.status === 'rejected')).toBe(true);
    expect((await readRegularFile(fileWith('still here'), options)).toString('utf8')).toBe('still here');
  });

  it('R5: a FIFO with a writer waiting on it is refused too: nothing is read from it', async () => {
    const file = fifo();
    // A writer blocked in open() until some reader comes.
    const writer = spawn('sh', ['-c', `printf leaked > '${file}'`], { stdio: 'ignore' });
    writers.push(writer);
    expect((await refusal(() => readRegularFile(file, options))).reason).toBe('not_regular');
  });
});

describe('R5, R6 readFileOrPipeSync: a secret given once through a pipe', () => {
  const writers: Array<ReturnType<typeof spawn>> = [];
  afterEach(() => {
    for (const writer of writers.splice(0)) writer.kill('SIGKILL');
  });

  function fifoWrittenOnce(content: string): string {
    const file = fifo();
    writers.push(spawn('sh', ['-c', `printf '%s' '${content}' > '${file}'`], { stdio: 'ignore' }));
    return file;
  }

  it('R5: a FIFO written once (as <(printf s3cret) is) is read until its writer closes it, and said to be a pipe', () => {
    const file = fifoWrittenOnce('s3cret');
    const { bytes, pipe } = readFileOrPipeSync(file, { maxBytes: 4 * KIB, pipeWaitMs: 10_000 });
    expect(bytes.toString('utf8')).toBe('s3cret');
    expect(pipe).toBe(true);
  });

  it('R5: a FIFO nobody writes to is refused after the bounded wait, naming the path', () => {
    const file = fifo();
    expect(() => readFileOrPipeSync(file, { maxBytes: 4 * KIB, pipeWaitMs: 50 })).toThrow(
      `${file} is a FIFO and nothing was written to it within 0.1 s`,
    );
  });

  it('R5: a pipe that brings more than maxBytes is refused as too large, reading no more than maxBytes + 1', () => {
    const file = fifoWrittenOnce('x'.repeat(100));
    expect(() => readFileOrPipeSync(file, { maxBytes: 10, pipeWaitMs: 10_000 })).toThrow(
      `${file} is larger than 10 bytes`,
    );
  });

  it('R5: a regular file is read as readRegularFileSync reads it (not a pipe); a directory is still refused', () => {
    expect(readFileOrPipeSync(fileWith('plain'), { maxBytes: 4 * KIB, pipeWaitMs: 50 })).toEqual({
      bytes: Buffer.from('plain'),
      pipe: false,
    });
    const folder = fresh('dir');
    fs.mkdirSync(folder);
    expect(() => readFileOrPipeSync(folder, { maxBytes: 4 * KIB, pipeWaitMs: 50 })).toThrow(
      `${folder} is a directory, not a regular file`,
    );
  });
});

describe('R5 writeRegularFile: secrets written by the sidecar (authorize --out)', () => {
  it('R5: creates the file with mode 0600, or replaces the content of an existing regular file and makes it 0600', async () => {
    const file = fresh('out');
    await writeRegularFile(file, 'first\n', { mode: 0o600 });
    expect(fs.readFileSync(file, 'utf8')).toBe('first\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    fs.chmodSync(file, 0o644);
    await writeRegularFile(file, '2nd', { mode: 0o600 });
    expect(fs.readFileSync(file, 'utf8')).toBe('2nd');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(() => checkWritableTarget(file)).not.toThrow();
    expect(() => checkWritableTarget(fresh('not-yet'))).not.toThrow();
  });

  it('R5: a symlink is refused: the file it points to is neither written nor chmod-ed', async () => {
    const target = fileWith('someone else');
    fs.chmodSync(target, 0o644);
    const link = fresh('out-link');
    fs.symlinkSync(target, link);
    expect(() => checkWritableTarget(link)).toThrow(UnsafeFileError);
    await expect(writeRegularFile(link, 'secret', { mode: 0o600 })).rejects.toMatchObject({
      reason: 'symlink',
      path: link,
    });
    expect(fs.readFileSync(target, 'utf8')).toBe('someone else');
    expect(fs.statSync(target).mode & 0o777).toBe(0o644);
  });

  it('R5: a FIFO, a directory or a device is refused at once, naming the path, and never blocks', async () => {
    const pipe = fifo();
    const folder = fresh('out-dir');
    fs.mkdirSync(folder);
    for (const [path, what] of [
      [pipe, 'a FIFO'],
      [folder, 'a directory'],
      ['/dev/null', 'a character device'],
    ] as const) {
      expect(() => checkWritableTarget(path)).toThrow(`${path} is ${what}, not a regular file`);
      await expect(writeRegularFile(path, 'secret', { mode: 0o600 })).rejects.toThrow(
        `${path} is ${what}, not a regular file`,
      );
    }
  });
});
