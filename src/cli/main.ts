#!/usr/bin/env node
// The `maria` executable: starts the command line (program.ts), first relaunching itself once so
// that ONNX Runtime's weights sit on huge pages (see hugepages.ts).
import { exitWithLauncher, relaunchWithHugePages } from './hugepages.js';

exitWithLauncher();
const relaunched = relaunchWithHugePages();
if (relaunched) process.exitCode = await relaunched;
else await import('./program.js');
