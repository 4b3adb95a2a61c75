/**
 * @module
 * Bundle entry of dist/cloudcore.js: `node cloudcore.js [--port …] [--config …]`.
 */
import { runCloud } from './main.js';

await runCloud(process.argv.slice(2));
