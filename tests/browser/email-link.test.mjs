// The link of a "report ready" email, opened in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) against a running
// usage-report. Run by tests/tests/report_email.rs, which passes:
//   REPORT_URL   the service's base URL
//   LINK_PATH    the link's path and query: /?download=<export_id>
//   OWNER_TOKEN  the bearer token of the schedule's admin
//   OTHER_TOKEN  the token of another admin of the same team
//   FILE_NAME    the export's file name
// The page asks for sign-in, then downloads the file for its owner; for
// another admin it downloads nothing and says the report is not theirs. No
// Content-Security-Policy violation on the way.
// Exits 0 when every check passes; prints the failure and exits 1 otherwise.
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("REPORT_URL").replace(/\/$/, "");
const link = base + env("LINK_PATH");
const ownerToken = env("OWNER_TOKEN");
const otherToken = env("OTHER_TOKEN");
const fileName = env("FILE_NAME");

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
let failed = false;

/// Opens the link in a fresh session and signs in with `token`.
async function openAndSignIn(token) {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(link);
  const note = await page.textContent("#login-note");
  check(/sign in to download/i.test(note || ""), `the page asks for sign-in: ${JSON.stringify(note)}`);
  await page.fill("#token", token);
  return { context, page };
}

try {
  // The owner: signed in, the file downloads under its name, and the link
  // leaves the address bar.
  {
    const { context, page } = await openAndSignIn(ownerToken);
    const [download] = await Promise.all([
      page.waitForEvent("download", { timeout: 15000 }),
      page.click("#login-form button[type=submit]"),
    ]);
    check(download.suggestedFilename() === fileName,
      `downloaded as ${download.suggestedFilename()}, want ${fileName}`);
    const path = await download.path();
    check(path, "the download was saved");
    await page.waitForFunction(() => /Downloaded/.test(document.querySelector("#download-line").textContent));
    check(!page.url().includes("download="), `the link leaves the address: ${page.url()}`);
    await context.close();
  }
  // Another admin: nothing downloads; the page says the report is not theirs.
  {
    const { context, page } = await openAndSignIn(otherToken);
    let downloaded = false;
    page.on("download", () => { downloaded = true; });
    await page.click("#login-form button[type=submit]");
    await page.waitForFunction(() => /not one of yours/.test(document.querySelector("#download-line").textContent),
      null, { timeout: 15000 });
    await page.waitForTimeout(500);
    check(!downloaded, "another admin downloads nothing");
    await context.close();
  }
  // The 404 of another admin's export is logged by the browser as a failed
  // resource; anything else (a CSP violation, a script error) fails the test.
  const unexpected = errors.filter((e) => !/status of 404/.test(e));
  check(unexpected.length === 0, `errors in the page: ${unexpected.join("; ")}`);
  console.log("email link: downloads for its owner only");
} catch (e) {
  failed = true;
  console.error(e && e.stack ? e.stack : String(e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
