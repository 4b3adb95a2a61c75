/**
 * @module
 * Bundle entry of dist/edgecore.js: `node edgecore.js --cloud … --node-name … --data-dir …`.
 */
import { runEdge } from './main.js';

await runEdge(process.argv.slice(2));
