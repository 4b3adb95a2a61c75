// Types of ./esbuild-plugins.mjs for the TypeScript tests that import it.
import type { BuildOptions, Plugin } from 'esbuild';

export const stubNative: Plugin;
export const stubDebug: Plugin;
export const stubSerialport: Plugin;
export const stubLong: Plugin;
export const wsClientOnly: Plugin;
export const asn1Esm: Plugin;
export const streamAlias: Record<string, string>;
export const banner: NonNullable<BuildOptions['banner']>;
