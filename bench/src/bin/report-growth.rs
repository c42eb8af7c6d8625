//! `report-growth`: how the report's latency grows with the data stored,
//! from several `report-latency` results (one per dataset size): a
//! Markdown table of every case's p95 per size and variant, and a PNG plot
//! of the main cases' p95 against events stored (log scale), with the
//! targets drawn.
//!
//!   target/release/report-growth bench/results/report-latency-10k.json \
//!       bench/results/report-latency-50k.json bench/results/report-latency-150k.json \
//!       --png bench/results/report-growth.png
//!
//! Text needs a TrueType font: DejaVu Sans (Debian's fonts-dejavu-core) by
//! default, `--font` for another.

use anyhow::{bail, Context, Result};
use clap::Parser;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "report-growth",
    about = "The report's p95 latency against the data stored, from report-latency results."
)]
struct Args {
    /// report-latency results (JSON), one per dataset size.
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Where to draw the plot.
    #[arg(long, default_value = "bench/results/report-growth.png")]
    png: PathBuf,
    /// Where to write the table (Markdown); stdout always has it.
    #[arg(long)]
    table: Option<PathBuf>,
    /// A TrueType font for the plot's text.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Results {
    dataset: Dataset,
    variants: Vec<Variant>,
}

#[derive(Debug, Deserialize)]
struct Dataset {
    stored: u64,
    scenario: Scenario,
}

#[derive(Debug, Deserialize)]
struct Scenario {
    users: u64,
    days: u32,
}

#[derive(Debug, Deserialize)]
struct Variant {
    name: String,
    cases: Vec<Case>,
    report_vm_hwm_kb: Option<u64>,
    load: Option<Load>,
}

#[derive(Debug, Deserialize)]
struct Case {
    case: String,
    range: String,
    p95_ms: f64,
}

#[derive(Debug, Deserialize)]
struct Load {
    requests_per_sec: f64,
    p99_ms: f64,
    errors: usize,
}

/// The cases drawn: (case, range, label).
const DRAWN: [(&str, &str, &str); 5] = [
    (
        "overview team=all",
        "last_3_months",
        "overview, all teams, 3 months",
    ),
    (
        "users p1 team=all",
        "last_3_months",
        "users page, all teams, 3 months",
    ),
    (
        "users p1 team=all",
        "last_12_months",
        "users page, all teams, 12 months",
    ),
    (
        "overview largest team",
        "last_3_months",
        "overview, largest team, 3 months",
    ),
    (
        "page load team=all",
        "last_3_months",
        "page load, all teams, 3 months",
    ),
];

fn read(path: &PathBuf) -> Result<Results> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn table(sizes: &[Results]) -> String {
    let variants: Vec<&str> = sizes
        .iter()
        .flat_map(|r| r.variants.iter().map(|v| v.name.as_str()))
        .fold(Vec::new(), |mut names, n| {
            if !names.contains(&n) {
                names.push(n);
            }
            names
        });
    let mut out = String::from("| case | range |");
    let mut rule = String::from("|---|---|");
    for r in sizes {
        for v in &variants {
            out.push_str(&format!(
                " {}k users, {:.1}M events: {v} |",
                r.dataset.scenario.users / 1000,
                r.dataset.stored as f64 / 1e6
            ));
            rule.push_str("---:|");
        }
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    let mut cases: Vec<(String, String)> = Vec::new();
    for r in sizes {
        for v in &r.variants {
            for c in &v.cases {
                let key = (c.case.clone(), c.range.clone());
                if !cases.contains(&key) {
                    cases.push(key);
                }
            }
        }
    }
    for (case, range) in &cases {
        out.push_str(&format!("| {case} | {range} |"));
        for r in sizes {
            for name in &variants {
                let p95 = r
                    .variants
                    .iter()
                    .find(|v| v.name == *name)
                    .and_then(|v| {
                        v.cases
                            .iter()
                            .find(|c| c.case == *case && c.range == *range)
                    })
                    .map_or("–".to_owned(), |c| format!("{:.0}", c.p95_ms));
                out.push_str(&format!(" {p95} |"));
            }
        }
        out.push('\n');
    }
    let mut footer = |what: &str, cell: &dyn Fn(&Variant) -> String| {
        out.push_str(&format!("| {what} | |"));
        for r in sizes {
            for name in &variants {
                let text = r
                    .variants
                    .iter()
                    .find(|v| v.name == *name)
                    .map_or("–".to_owned(), cell);
                out.push_str(&format!(" {text} |"));
            }
        }
        out.push('\n');
    };
    footer("peak memory (MB)", &|v| {
        v.report_vm_hwm_kb
            .map_or("?".into(), |k| format!("{:.0}", k as f64 / 1024.0))
    });
    footer("20 clients: requests/s", &|v| {
        v.load
            .as_ref()
            .map_or("–".into(), |l| format!("{:.1}", l.requests_per_sec))
    });
    footer("20 clients: p99 ms (errors)", &|v| {
        v.load
            .as_ref()
            .map_or("–".into(), |l| format!("{:.0} ({})", l.p99_ms, l.errors))
    });
    out
}

fn plot(args: &Args, sizes: &[Results]) -> Result<()> {
    let font = std::fs::read(&args.font)
        .with_context(|| format!("reading the font {}", args.font.display()))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("{} is not a usable font", args.font.display()))?;

    // (variant, label) -> [(million events, p95)]
    let mut series: BTreeMap<(String, &str), Vec<(f64, f64)>> = BTreeMap::new();
    for r in sizes {
        let x = r.dataset.stored as f64 / 1e6;
        for v in &r.variants {
            for (case, range, label) in DRAWN {
                if let Some(c) = v.cases.iter().find(|c| c.case == case && c.range == range) {
                    series
                        .entry((v.name.clone(), label))
                        .or_default()
                        .push((x, c.p95_ms.max(0.1)));
                }
            }
        }
    }
    let x_max = sizes
        .iter()
        .map(|r| r.dataset.stored as f64 / 1e6)
        .fold(1.0, f64::max)
        * 1.08;
    let y_max = series.values().flatten().map(|p| p.1).fold(300.0, f64::max) * 1.5;

    let root = BitMapBackend::new(&args.png, (1280, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let days = sizes.first().map_or(0, |r| r.dataset.scenario.days);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("usage-report p95 latency against events stored ({days} days of history)"),
            ("sans-serif", 26),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (0.5f64..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("events stored (millions)")
        .y_desc("p95 (ms, log scale)")
        .label_style(("sans-serif", 16))
        .draw()?;
    for (target, text) in [
        (100.0, "target 100 ms"),
        (200.0, "largest size, all teams: 200 ms"),
    ] {
        chart
            .draw_series(LineSeries::new(
                [(0.0, target), (x_max, target)],
                BLACK.mix(0.35).stroke_width(1),
            ))?
            .label(text)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.35)));
    }
    let colors = [&RED, &BLUE, &GREEN, &MAGENTA, &CYAN, &BLACK];
    let labels: Vec<&str> = DRAWN.iter().map(|d| d.2).collect();
    for ((variant, label), points) in &series {
        let color = colors[labels.iter().position(|l| l == label).unwrap_or(0) % colors.len()];
        let style = match variant.as_str() {
            "before" => color.mix(0.45).stroke_width(2),
            "after" => color.stroke_width(3),
            _ => color.mix(0.8).stroke_width(1),
        };
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(format!("{label} — {variant}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        chart.draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, 4, style.color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut sizes = args.results.iter().map(read).collect::<Result<Vec<_>>>()?;
    if sizes.is_empty() {
        bail!("no results given");
    }
    sizes.sort_by_key(|r| r.dataset.stored);
    let text = table(&sizes);
    println!("{text}");
    if let Some(path) = &args.table {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    plot(&args, &sizes)?;
    println!("plot: {}", args.png.display());
    Ok(())
}
