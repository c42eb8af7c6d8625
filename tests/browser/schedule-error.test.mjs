// A failing schedule's last error on the page, in headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core), against a
// running usage-report. Run by tests/tests/report_schedules.rs, which passes:
//   REPORT_URL   the service's base URL
//   TOKEN        the bearer token of the schedule's admin
//   SCHEDULE_ID  the failing schedule
//   MESSAGE      what its last error says (as the API answers it)
// Exits 0 when the page shows the error under the schedule; prints the
// failure and exits 1 otherwise.
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("REPORT_URL").replace(/\/$/, "");
const token = env("TOKEN");
const scheduleId = env("SCHEDULE_ID");
const message = env("MESSAGE");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await browser.newPage();
  await page.goto(base + "/");
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  const shown = page.locator(`li[data-schedule="${scheduleId}"] [data-field=last_error]`);
  await shown.waitFor({ timeout: 15000 });
  const text = await shown.textContent();
  if (!/^Last run failed /.test(text) || !text.includes(message)) {
    throw new Error(`the schedule's error reads ${JSON.stringify(text)}, want "Last run failed …${message}…"`);
  }
  console.log("schedule error shown: " + text);
} catch (e) {
  failed = true;
  console.error(e && e.stack ? e.stack : String(e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
