/**
 * @module
 * MetaServer defaults, the one place they are written (`edge/config.ts` takes its `metaServer.*`
 * defaults from here), and the names of the files it keeps under `<data-dir>/metaserver/`
 * (`ledge edge get` reads them too). No imports: the CLI loads this file without the server.
 */

/** MetaServer options; defaults in {@link defaultMetaServerOptions}. */
export interface MetaServerOptions {
  /** Data directory of EdgeCore; MetaServer's files live in `<dataDir>/metaserver/`. */
  dataDir: string;
  /** Serve at all (EdgeCore registers the module only when true). Default true. */
  enabled: boolean;
  /** Address to listen on. Default 127.0.0.1 (plain HTTP: keep it on loopback). */
  bindAddress: string;
  /** Port to listen on; 0 picks a free one. Default 10550 (KubeEdge's). */
  port: number;
  /** Concurrent watches; one more is answered 429. Default 100. */
  maxWatches: number;
  /** Recent changes kept so a watch from a recent resourceVersion replays what it missed. Default 1000. */
  watchHistory: number;
  /** Bytes a watcher may leave unread before its stream is ended (it re-watches). Default 4 MiB. */
  maxWatchBufferBytes: number;
  /** Open connections; more are refused by the kernel backlog / closed at once. Default 256. */
  maxConnections: number;
  /** BOOKMARK interval of watches that ask for them (`allowWatchBookmarks`), ms. Default 60000. */
  bookmarkIntervalMs: number;
  /** A watch without `timeoutSeconds` ends after a random time between this and twice this, ms. Default 30 min (kube-apiserver's minRequestTimeout). */
  watchTimeoutMs: number;
  /** Time a client has to send its request headers, ms. Default 10000. */
  headersTimeoutMs: number;
  /** Time a client has to send its whole request, ms. Default 30000. */
  requestTimeoutMs: number;
  /** Idle keep-alive connections are closed after this long, ms. Default 5000. */
  keepAliveTimeoutMs: number;
  /** Largest request header block, bytes. Default 16 KiB. */
  maxHeaderBytes: number;
  /** First retry delay after a failed listen (port taken), ms; doubles to {@link listenRetryMaxMs}. Default 1000. */
  listenRetryBaseMs: number;
  /** Largest retry delay after a failed listen, ms. Default 30000. */
  listenRetryMaxMs: number;
}

/** Defaults of every option but the data directory. */
export const defaultMetaServerOptions = {
  enabled: true,
  bindAddress: '127.0.0.1',
  port: 10550,
  maxWatches: 100,
  watchHistory: 1000,
  maxWatchBufferBytes: 4 * 1024 * 1024,
  maxConnections: 256,
  bookmarkIntervalMs: 60_000,
  watchTimeoutMs: 30 * 60_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderBytes: 16 * 1024,
  listenRetryBaseMs: 1_000,
  listenRetryMaxMs: 30_000,
} as const satisfies Omit<MetaServerOptions, 'dataDir'>;

/** MetaServer's directory under the data directory (mode 0700). */
export const METASERVER_DIR = 'metaserver';
/** The node-local admin token (mode 0600): full read access. */
export const ADMIN_TOKEN_FILE = 'admin.token';
/** The HMAC key pod tokens are derived from (mode 0600). */
export const POD_TOKEN_KEY_FILE = 'pod-token.key';
/** The URL MetaServer listens on, written once it listens (for `ledge edge get`). */
export const SERVER_URL_FILE = 'server.url';
/** The revision epoch, advanced at each start (see docs/metaserver.md, "Resource versions"). */
export const EPOCH_FILE = 'epoch';
