// Screenshots for the README's "Watch a run" (not part of CI): TensorBoard's scalars and images of
// the runs scripts/tensorboard_check.sh trained, and `pna runs`'s output drawn as a terminal shows it.
//
//   NODE_PATH=<a folder with playwright-core installed> node scripts/tensorboard_check.js http://127.0.0.1:6066 OUT_DIR
const fs = require("fs");
const { chromium } = require("playwright-core");

const [base, outDir] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"];

(async () => {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS });
  const page = await browser.newPage({ viewport: { width: 1500, height: 1300 } });
  page.on("pageerror", (e) => console.log("page error:", e.message));
  await page.goto(`${base}/#timeseries`, { waitUntil: "networkidle", timeout: 120000 });
  await page.waitForTimeout(8000);  // every card drawn
  const settings = page.locator("button:has-text('Settings')").first();
  if (await page.locator("text=Tooltip sorting method").count()) await settings.click();  // the pane hides cards
  const tags = page.locator("input[placeholder='Filter tags (regex)']").first();
  await tags.fill("^loss/|^train/|^mIoU/P4");
  await tags.press("Escape");  // the tag suggestions would cover the cards
  await page.mouse.click(100, 1250);  // the runs pane's empty part: no tooltip over a chart
  await page.waitForTimeout(6000);
  await page.screenshot({ path: `${outDir}/tensorboard_scalars.png` });
  await page.setViewportSize({ width: 1900, height: 1300 });
  await page.goto(`${base}/#images`, { waitUntil: "networkidle", timeout: 120000 });  // the larger image view
  await page.waitForTimeout(4000);
  await page.locator("text=Show actual image size").first().click();
  await page.waitForTimeout(4000);
  await page.screenshot({ path: `${outDir}/tensorboard_images.png`, clip: { x: 0, y: 0, width: 1900, height: 560 } });
  const text = fs.readFileSync(`${outDir}/pna_runs.txt`, "utf8").replace(/&/g, "&amp;").replace(/</g, "&lt;");
  await page.setViewportSize({ width: 1900, height: 300 });
  await page.setContent(`<body style="margin:0;background:#1e1e1e"><pre style="color:#e0e0e0;font:13px monospace;
    padding:14px;margin:0;display:inline-block">$ pna runs\n${text}</pre></body>`);
  await page.locator("pre").screenshot({ path: `${outDir}/pna_runs.png` });
  await browser.close();
})();
