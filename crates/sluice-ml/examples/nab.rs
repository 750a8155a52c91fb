//! Runs the series detector over every NAB data file and writes a results tree for
//! `shared/tools/nab_score.py`.
//!
//! Usage: `cargo run --release -p sluice-ml --example nab -- OUTDIR [NAB_DATA_DIR]`
//! (the data directory defaults to `../shared/data/nab/data`, relative to the workspace root).

use std::error::Error;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice_ml::anomaly::{read_series_csv, score_series, write_scored_csv, SeriesDetectorConfig};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(out), data) = (args.next(), args.next()) else {
        return Err("usage: nab OUTDIR [NAB_DATA_DIR]".into());
    };
    let data = PathBuf::from(data.unwrap_or_else(|| "../shared/data/nab/data".into()));
    let cfg = SeriesDetectorConfig::default();
    println!("config: {cfg:?}");

    let started = Instant::now();
    let (mut files, mut points) = (0usize, 0usize);
    for (category, file) in csv_files(&data)? {
        let series = read_series_csv(File::open(data.join(&category).join(&file))?)
            .map_err(|e| format!("{category}/{file}: {e}"))?;
        let scores = score_series(&series, &cfg);
        let dir = Path::new(&out).join(&category);
        fs::create_dir_all(&dir)?;
        write_scored_csv(
            BufWriter::new(File::create(dir.join(&file))?),
            &series,
            &scores,
        )?;
        let alarms = scores.iter().filter(|&&s| s >= 0.5).count();
        println!(
            "{category}/{file}: {} points, {alarms} scores >= 0.5",
            series.len()
        );
        files += 1;
        points += series.len();
    }
    println!(
        "scored {files} files, {points} points in {:.2} s (reading, scoring and writing)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `(category, file name)` of every `*.csv` one level below `data`, sorted.
fn csv_files(data: &Path) -> Result<Vec<(String, String)>, Box<dyn Error>> {
    let mut files = Vec::new();
    for category in fs::read_dir(data).map_err(|e| format!("{}: {e}", data.display()))? {
        let category = category?.path();
        if !category.is_dir() {
            continue;
        }
        for file in fs::read_dir(&category)? {
            let file = file?.path();
            if file.extension().is_some_and(|e| e == "csv") {
                let name = |p: &Path| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                };
                files.push((name(&category), name(&file)));
            }
        }
    }
    files.sort();
    Ok(files)
}
