// The usage report page in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core), against a running usage-report over real
// ClickHouse. Run by tests/tests/report_browser.rs, which starts everything
// and passes:
//   REPORT_URL      the service's base URL
//   REPORT_TOKEN    an admin's bearer token (primary, every team)
//   REPORT_TEAM     a team with PII visible
//   REPORT_HASHED_TEAM a team with PII off
//   REFUSED_USER    a user of that team holding REFUSED_PRODUCT via a group or default assignment
//   REFUSED_PRODUCT
//   SCREENSHOT      where to save a screenshot of the page
// Every number the page shows is compared with what the JSON API answers.
// Profile images (PII on): shown from the origin the service allows
// (--avatar-origins https://cdn.example.com, answered here by a route),
// initials for a user with none or whose image fails; none for hashed rows;
// the Content-Security-Policy names exactly that origin for images.
// The usage class column and filter and the occasional seat users tile
// (with the Flex tokens if moved) equal the API's.
// Also: editing a schedule keeps its own kind and filters; product, group and
// search (debounced) update the page without "Apply"; a custom range sends
// nothing until both dates are chosen, from <= to; at 1280 px wide the table
// needs no sideways scrolling and no status badge is cut off.
// Exits 0 when every check passes; prints the failure and exits 1 otherwise.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("REPORT_URL");
const token = env("REPORT_TOKEN");
const team = env("REPORT_TEAM");
const hashedTeam = env("REPORT_HASHED_TEAM");
const refusedUser = env("REFUSED_USER");
const refusedProduct = env("REFUSED_PRODUCT");
const screenshot = env("SCREENSHOT");

async function api(path, method, body) {
  const res = await fetch(base + path, {
    method: method || "GET",
    headers: Object.assign({ Authorization: "Bearer " + token }, body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/// Polls `read` until it equals `want` (as JSON), or fails after 15 s.
async function eventually(what, read, want) {
  const deadline = Date.now() + 15000;
  let got;
  for (;;) {
    got = await read();
    if (JSON.stringify(got) === JSON.stringify(want)) return;
    if (Date.now() > deadline) {
      throw new Error(`${what}: the page shows ${JSON.stringify(got)}, the API says ${JSON.stringify(want)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
let failed = false;
let stepName = "start";
const step = (name) => { stepName = name; };
try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 1100 } });
  // The avatar CDN: a 1x1 PNG for every image but one, which fails.
  const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64");
  const firstAvatars = await api(`/v1/report/users?team=${encodeURIComponent(team)}&range=last_3_months&sort=days_used:desc&page=1&page_size=50`);
  const broken = firstAvatars.rows.find((r) => r.avatar_url)?.avatar_url;
  check(broken && firstAvatars.rows.filter((r) => r.avatar_url).length > 1 && firstAvatars.rows.some((r) => !r.avatar_url),
    "the first page has users with and without profile images");
  await context.route("https://cdn.example.com/**", (route) => route.request().url() === broken
    ? route.fulfill({ status: 404, body: "" })
    : route.fulfill({ status: 200, contentType: "image/png", body: png }));
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  // JavaScript errors count; Chromium's "Failed to load resource" lines for
  // the answers the test provokes (401 for a wrong token, 409 for a refused
  // unassign) do not.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });

  const tiles = () => page.evaluate(() => {
    const out = {};
    for (const e of document.querySelectorAll("[data-figure]")) {
      if (!e.closest(".hidden")) out[e.closest(".tile").id + "." + e.dataset.figure] = e.textContent;
    }
    return out;
  });
  const wantTiles = (o) => {
    const out = {};
    for (const [k, v] of Object.entries(o.subscriptions)) out["tile-subscriptions." + k] = String(v);
    for (const [k, v] of Object.entries(o.flex)) out["tile-flex." + k] = String(v);
    for (const [k, v] of Object.entries(o.occasional)) out["tile-occasional." + k] = String(v);
    return out;
  };
  const tableRows = () => page.evaluate(() => [...document.querySelectorAll("#users tbody tr[data-user-key]")]
    .map((tr) => [tr.dataset.userKey, tr.querySelector('[data-field="days_used"]').textContent,
      tr.querySelector('[data-field="usage_class"]').textContent]));
  const wantRows = (p) => p.rows.map((r) => [r.user_key, String(r.days_used), r.usage_class]);
  // At 1280 px: the table needs no sideways scrolling, and no status badge
  // is cut off (its text fits the badge, the badge its cell).
  const badgesFit = async (what) => {
    const bad = await page.evaluate(() => {
      const out = [];
      const box = document.querySelector("#users").parentElement;
      if (box.scrollWidth > box.clientWidth) out.push(`the table is ${box.scrollWidth}px wide in ${box.clientWidth}px`);
      const view = box.getBoundingClientRect();
      for (const b of document.querySelectorAll("#users tbody .badge")) {
        const r = b.getBoundingClientRect(), c = b.closest("td").getBoundingClientRect();
        if (b.scrollWidth > b.clientWidth || r.left < c.left || r.right > c.right || r.top < c.top
          || r.bottom > c.bottom || r.right > view.right + 0.5) out.push(`${b.textContent}: ${JSON.stringify([r, c])}`);
      }
      return out;
    });
    check(bad.length === 0, `badges cut off (${what}): ${bad.slice(0, 3).join("; ")}`);
    check(await page.locator("#users tbody .badge").count() > 0, `badges shown (${what})`);
  };

  step("log in");
  // Log in: a wrong token is refused, an admin's opens the report.
  const landing = await page.goto(base + "/");
  const policy = landing.headers()["content-security-policy"] || "";
  check(policy.includes("img-src 'self' data: https://cdn.example.com;"),
    "the page's policy allows images from exactly the avatar origin: " + policy);
  await page.fill("#token", "not-anyones-token-0123");
  await page.click("#login-form button");
  await page.waitForSelector("#login-error:has-text('not an admin')");
  await page.fill("#token", token);
  await page.click("#login-form button");
  await page.waitForSelector("#app:not(.hidden)");

  step("all teams tiles");
  // All teams, last 30 days: no inactive figure.
  await eventually("tiles, all teams", tiles, wantTiles(await api("/v1/report/overview?team=all&range=last_30_days")));
  check(await page.isHidden("#figure-inactive"), "no inactive summary for all teams");

  step("team and range");
  // Change team and range: tiles, chart and the first page follow the API.
  await page.selectOption("#f-team", team);
  await page.selectOption("#f-range", "last_3_months");
  const filters = `team=${encodeURIComponent(team)}&range=last_3_months`;
  await eventually("tiles, one team", tiles, wantTiles(await api(`/v1/report/overview?${filters}`)));
  check(await page.isVisible("#figure-inactive"), "the inactive summary for one team");
  const daily = await api(`/v1/report/daily?${filters}`);
  await eventually("chart bars", () => page.locator("#chart rect").count(), daily.days.length);
  let first = await api(`/v1/report/users?${filters}&sort=days_used:desc&page=1&page_size=50`);
  await eventually("users, first page", tableRows, wantRows(first));
  await eventually("row count", () => page.textContent("#page-line"),
    `Page 1 of ${Math.max(1, Math.ceil(first.total / 50))} (${first.total} rows)`);

  step("profile images");
  // PII on: each row's image where it has one and it loads, initials where
  // it has none or it failed (the broken one).
  const faces = () => page.evaluate(() => [...document.querySelectorAll("#users tbody tr[data-user-key]")].map((tr) => {
    const img = tr.querySelector('img[data-field="avatar"]');
    const initials = tr.querySelector('[data-field="initials"]');
    return [tr.dataset.userKey, img ? (img.complete && img.naturalWidth > 0 ? "image" : "loading") : initials ? "initials:" + initials.textContent : "none"];
  }));
  const wantFaces = first.rows.map((r) => [r.user_key, r.name === null ? "none" : r.avatar_url && r.avatar_url !== broken ? "image"
    : "initials:" + [...(r.name || "").split(/[\s._@-]+/).filter((w) => /\p{L}|\p{N}/u.test([...w][0] || "")).slice(0, 2)]
      .map((w) => [...w][0]).join("").toUpperCase()]);
  await eventually("profile images and initials", faces, wantFaces);

  step("usage class");
  // The usage class filter: tiles (the occasional seat users and their
  // tokens if moved to Flex among them) and rows follow the API; then the
  // column sorts.
  const teamTiles = await api(`/v1/report/overview?${filters}`);
  check(teamTiles.occasional.seats > 0, "the team has occasional seats: " + JSON.stringify(teamTiles.occasional));
  for (const cls of ["occasional", "frequent"]) {
    await page.selectOption("#f-usage_class", cls);
    const byClass = `${filters}&usage_class=${cls}`;
    await eventually(`tiles, ${cls}`, tiles, wantTiles(await api(`/v1/report/overview?${byClass}`)));
    const classRows = await api(`/v1/report/users?${byClass}&sort=days_used:desc&page=1&page_size=50`);
    check(classRows.rows.length > 0 && classRows.rows.every((r) => r.usage_class === cls), `rows of class ${cls}`);
    await eventually(`users, ${cls}`, tableRows, wantRows(classRows));
  }
  await page.selectOption("#f-usage_class", "");
  await eventually("users, any class", tableRows, wantRows(first));
  await page.click('#users th[data-col="usage_class"]');
  await eventually("sorted by usage class", tableRows,
    wantRows(await api(`/v1/report/users?${filters}&sort=usage_class:desc&page=1&page_size=50`)));
  await page.click('#users th[data-col="days_used"]');
  await eventually("sorted by days used again", tableRows, wantRows(first));

  step("sort");
  // Sort: a second click on "Days used" turns the order around.
  await page.click('#users th[data-col="days_used"]');
  await eventually("sorted ascending", tableRows,
    wantRows(await api(`/v1/report/users?${filters}&sort=days_used:asc&page=1&page_size=50`)));
  await page.click('#users th[data-col="product"]');
  await eventually("sorted by product", tableRows,
    wantRows(await api(`/v1/report/users?${filters}&sort=product:desc&page=1&page_size=50`)));
  step("pages");
  // Pages.
  if (first.total > 50) {
    await page.click("#next");
    await eventually("page 2", tableRows,
      wantRows(await api(`/v1/report/users?${filters}&sort=product:desc&page=2&page_size=50`)));
    await page.click("#prev");
  }

  step("export");
  // Export: accepted, its progress shown, then the CSV downloaded holds
  // every row of the table.
  await page.evaluate(() => {
    window.exportLines = [];
    new MutationObserver(() => window.exportLines.push(document.querySelector("#export-line").textContent))
      .observe(document.querySelector("#export-line"), { childList: true, characterData: true, subtree: true });
  });
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.click('[data-export="report"][data-format="csv"]'),
  ]);
  const csv = readFileSync(await download.path(), "utf8").trim().split(/\r?\n/);
  check(csv[0].startsWith("user_key,"), "the CSV header: " + csv[0]);
  check(csv.length - 1 === first.total, `the CSV has ${csv.length - 1} rows, the report ${first.total}`);
  await page.waitForSelector(`#export-line:has-text("Exported ${first.total} rows")`);
  const exportLines = await page.evaluate(() => window.exportLines);
  check(exportLines.some((l) => /^Export(ing| requested| waiting)/.test(l)),
    "the export's progress is shown: " + JSON.stringify(exportLines));

  step("schedule");
  // Schedule the report with these filters: listed, with the limit shown.
  await page.fill("#s-name", "Browser weekly");
  await page.click("#s-submit");
  await page.waitForSelector("#schedules li:has-text('Browser weekly')");
  await eventually("schedule count", () => page.textContent("#schedule-count"), "(1 of 5)");
  const schedules = await api("/v1/schedules");
  check(schedules.schedules.length === 1 && schedules.schedules[0].filters.team === team,
    "the schedule holds the page's filters: " + JSON.stringify(schedules));
  step("edit schedule");
  // Edit it with other filters on the page: it keeps its own kind and
  // filters (shown), only the name and frequency change.
  const own = { kind: "token_usage", filters: { team, range: "last_6_months", access: "flex" } };
  const made = await api("/v1/schedules", "POST", Object.assign(
    { name: "Browser tokens", start_date: new Date().toISOString().slice(0, 10), frequency: "weekly", format: "csv" }, own));
  await page.reload();
  await page.waitForSelector("#app:not(.hidden)");
  await page.waitForSelector("#schedules li:has-text('Browser tokens')");
  await page.click('#users th[data-col="product"]'); // the sort again: product, descending
  await page.selectOption("#f-access", "seat");
  const li = `#schedules li[data-schedule="${made.schedule_id}"]`;
  const what = await page.textContent(`${li} [data-field="what"]`);
  check(/token usage/.test(what) && what.includes("last_6_months") && what.includes("flex"),
    "the schedule's own kind and filters are shown: " + what);
  await page.click(`${li} button:has-text('Edit')`);
  const keeps = await page.textContent("#s-keeps");
  check(/token usage/.test(keeps) && keeps.includes("flex"), "the edit shows what it keeps: " + keeps);
  await page.fill("#s-name", "Browser tokens monthly");
  await page.selectOption("#s-frequency", "monthly");
  await page.click("#s-submit");
  await page.waitForSelector("#schedules li:has-text('Browser tokens monthly')");
  const edited = await api(`/v1/schedules/${made.schedule_id}`);
  check(edited.kind === own.kind && JSON.stringify(edited.filters) === JSON.stringify(own.filters)
    && edited.frequency === "monthly" && edited.format === "csv",
    "the edit kept the schedule's kind and filters: " + JSON.stringify(edited));
  await page.selectOption("#f-access", "");
  await page.selectOption("#f-team", team);
  await page.selectOption("#f-range", "last_3_months");
  await eventually("tiles, back to the team", tiles, wantTiles(await api(`/v1/report/overview?${filters}`)));

  step("every filter");
  // Product, group and search update the tiles and the table without
  // "Apply"; the search waits for the typing to stop.
  const unfiltered = await api(`/v1/report/users?${filters}&sort=product:desc&page=1&page_size=50`);
  const requests = [];
  page.on("request", (r) => { if (r.url().includes("/v1/report/")) requests.push(r.url()); });
  const byProduct = `${filters}&product=${encodeURIComponent(refusedProduct)}`;
  await page.fill("#f-product", refusedProduct);
  await eventually("tiles, one product", tiles, wantTiles(await api(`/v1/report/overview?${byProduct}`)));
  await eventually("users, one product", tableRows,
    wantRows(await api(`/v1/report/users?${byProduct}&sort=product:desc&page=1&page_size=50`)));
  await page.fill("#f-product", "");
  const group = unfiltered.rows.flatMap((r) => r.groups)[0];
  if (group) {
    const byGroup = `${filters}&group=${encodeURIComponent(group)}`;
    await page.fill("#f-group", group);
    await eventually("tiles, one group", tiles, wantTiles(await api(`/v1/report/overview?${byGroup}`)));
    await eventually("users, one group", tableRows,
      wantRows(await api(`/v1/report/users?${byGroup}&sort=product:desc&page=1&page_size=50`)));
    await page.fill("#f-group", "");
  }
  await eventually("users, no filter typed", tableRows, wantRows(unfiltered));
  await new Promise((r) => setTimeout(r, 500));
  requests.length = 0;
  const typed = refusedUser.slice(0, 8);
  await page.type("#f-q", typed, { delay: 40 });
  await eventually("users, searched", tableRows,
    wantRows(await api(`/v1/report/users?${filters}&q=${encodeURIComponent(typed)}&sort=product:desc&page=1&page_size=50`)));
  await new Promise((r) => setTimeout(r, 500));
  const searches = requests.filter((u) => u.includes("/v1/report/users")).length;
  check(searches >= 1 && searches <= 2, `the search is debounced: ${searches} requests for ${typed.length} keys`);
  await page.fill("#f-q", "");
  await eventually("users, search cleared", tableRows, wantRows(unfiltered));

  // "Custom" waits for both dates, from <= to: no request that fails.
  const day = (n) => new Date(Date.now() - n * 86400000).toISOString().slice(0, 10);
  await new Promise((r) => setTimeout(r, 500));
  requests.length = 0;
  await page.selectOption("#f-range", "custom");
  await page.fill("#f-from", day(5));
  await page.waitForSelector("#range-line:has-text('both dates')");
  await page.fill("#f-to", day(40));
  await page.waitForSelector("#range-line:has-text('on or before')");
  await new Promise((r) => setTimeout(r, 500));
  check(requests.length === 0, "no request before both dates are chosen: " + JSON.stringify(requests));
  check(!(await page.evaluate(() => document.querySelector("#range-line").classList.contains("error"))),
    "a half-chosen custom range is not an error");
  await page.fill("#f-from", day(40));
  await page.fill("#f-to", day(5));
  const custom = `team=${encodeURIComponent(team)}&range=custom&from=${day(40)}&to=${day(5)}`;
  await eventually("tiles, custom range", tiles, wantTiles(await api(`/v1/report/overview?${custom}`)));
  await eventually("users, custom range", tableRows,
    wantRows(await api(`/v1/report/users?${custom}&sort=product:desc&page=1&page_size=50`)));
  await page.selectOption("#f-range", "last_3_months");
  await eventually("users, back to 3 months", tableRows, wantRows(unfiltered));

  step("unassign");
  // Unassign a user who holds the product through a group or a default
  // assignment: refused, and the reason shown in the row.
  await page.fill("#f-q", refusedUser);
  await page.fill("#f-product", refusedProduct);
  await page.click("#filters button[type=submit]");
  const q = `&q=${encodeURIComponent(refusedUser)}&product=${encodeURIComponent(refusedProduct)}`;
  await eventually("search", tableRows,
    wantRows(await api(`/v1/report/users?${filters}${q}&sort=product:desc&page=1&page_size=50`)));
  const refusedRow = `#users tbody tr[data-user-key="${refusedUser}"][data-product="${refusedProduct}"]`;
  await page.click(`${refusedRow} button:has-text('Unassign')`);
  await page.waitForSelector(`${refusedRow} .row-note.refused`);
  const reason = await page.textContent(`${refusedRow} .row-note`);
  check(/group|default/.test(reason), "the refusal says why: " + reason);

  step("screenshot");
  // Back to the whole team for the picture.
  await page.fill("#f-q", "");
  await page.fill("#f-product", "");
  await page.click("#filters button[type=submit]");
  first = await api(`/v1/report/users?${filters}&sort=product:desc&page=1&page_size=50`);
  await eventually("users again", tableRows, wantRows(first));
  await badgesFit("team");
  await page.screenshot({ path: screenshot, fullPage: true });

  step("hashed team");
  // A team with PII off: "hashed data values are shown" — the hash (the
  // user key) in the name and email of every row.
  await page.selectOption("#f-team", hashedTeam);
  const hashed = await api(`/v1/report/users?team=${encodeURIComponent(hashedTeam)}&range=last_3_months&sort=product:desc&page=1&page_size=50`);
  await eventually("users, hashed team", tableRows, wantRows(hashed));
  await badgesFit("hashed team");
  const shown = await page.evaluate(() => [...document.querySelectorAll("#users tbody tr[data-user-key]")]
    .map((tr) => [tr.dataset.userKey, tr.querySelector('[data-field="name"]')?.textContent, tr.querySelector('[data-field="email"]')?.textContent]));
  check(shown.length > 0 && shown.every(([k, n, e]) => /^[0-9a-f]{64}$/.test(k) && n === k && e === k),
    "the hash in name and email: " + JSON.stringify(shown.slice(0, 3)));
  check(await page.locator('#users tbody [data-field="avatar"], #users tbody [data-field="initials"]').count() === 0,
    "no profile image or initials where identities are hashed");
  check(errors.length === 0, "no errors in the page: " + errors.join("; "));
  console.log(`ok: tiles, chart, ${first.total} rows, usage class, sort, pages, export, schedule and its edit, every filter, custom range, badges at 1280 px, unassign, hashed team, profile images and initials; screenshot ${screenshot}`);
} catch (e) {
  failed = true;
  try { await (await browser.contexts()[0].pages())[0].screenshot({ path: screenshot.replace(/\.png$/, "-failed.png"), fullPage: true }); } catch (_) { /* best effort */ }
  console.error(`FAILED at "${stepName}": ${e.message}`);
  if (errors.length) console.error("page errors: " + errors.join("; "));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
