// fauxqs (an SQS emulator that stays fast with deep queues) bound to loopback only: its own
// start-up binds every interface. Prints the port on stdout; runs until stdin closes.
// Usage: node fauxqs_loopback.mjs <dir holding node_modules/fauxqs>
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const entry = pathToFileURL(join(process.argv[2], "node_modules", "fauxqs", "dist", "app.js"));
const { buildApp } = await import(entry.href);
const app = buildApp({ logger: false });
const address = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(new URL(address).port + "\n");
process.stdin.resume();
process.stdin.on("end", async () => {
  await app.close();
  process.exit(0);
});
