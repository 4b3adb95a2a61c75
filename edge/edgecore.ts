/**
 * @module
 * Bundle entry of dist/edgecore.js: `node edgecore.js --config <data-dir>/edgecore.json` (or
 * `--cloud … --node-name … --data-dir …`), and `node edgecore.js join …`, which admits the device
 * with a join token first (edge/join; loaded only for that command).
 */
const argv = process.argv.slice(2);
if (argv[0] === 'join') process.exitCode = await (await import('./join/index.js')).runJoin(argv.slice(1));
else await (await import('./main.js')).runEdge(argv);
