//! The corpus report on a generated 100,000-row JSONL whose every count is known beforehand,
//! and on a small CSV.

use std::io::Write;

use app::corpus::{COLUMNS, load};

const IDIOMAS: [&str; 7] = ["es", "es_mx", "es_ar", "ca", "eu", "gl", "xx"];
const PAISES: [&str; 4] = ["México", "Argentina", "España", "Colombia"];
const DOMINIOS: [&str; 3] = ["salud", "educación", "legal"];

fn bars(view: &app::corpus::CorpusView, column: &str) -> Vec<(String, usize)> {
    view.charts
        .iter()
        .find(|chart| chart.column == column)
        .unwrap()
        .bars
        .clone()
}

fn owned(bars: &[(&str, usize)]) -> Vec<(String, usize)> {
    bars.iter()
        .map(|(value, count)| ((*value).to_owned(), *count))
        .collect()
}

#[test]
fn a_hundred_thousand_rows_are_counted_exactly_and_bad_rows_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corpus.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..100_000usize {
        // Every thousandth answer is empty; ten rows repeat row 1; `epoca` is never given.
        let (pregunta, respuesta) = match i {
            _ if i % 10_000 == 5_000 => ("Pregunta 0".to_owned(), "Respuesta 0".to_owned()),
            _ if i % 1_000 == 999 => (format!("Pregunta {i}"), String::new()),
            _ => (format!("Pregunta {i}"), format!("Respuesta {i}")),
        };
        let mut row = serde_json::json!({
            "pregunta": pregunta, "entrada": "", "respuesta": respuesta, "idioma": IDIOMAS[i % 7],
            "nivel": "básico", "registro": "neutro", "dominio": DOMINIOS[i % 3], "tarea": "qa", "país": PAISES[i % 4],
        });
        if i == 7 {
            row["fuente"] = "web".into();
        }
        writeln!(file, "{row}").unwrap();
        // Three lines that are not rows, after rows 10, 20 and 30.
        match i {
            9 => writeln!(file, "{{not json").unwrap(),
            19 => writeln!(file, "[1, 2]").unwrap(),
            29 => writeln!(file, "42").unwrap(),
            _ => {}
        }
    }
    drop(file);

    let corpus = load(&path).unwrap();
    eprintln!(
        "corpus: {} rows read and checked in {:.0} ms",
        corpus.rows.len(),
        corpus.load_ms
    );
    let view = corpus.view(1);
    assert_eq!(view.rows, 100_000);
    assert_eq!(view.missing_columns, ["epoca"]);
    assert_eq!(view.unknown_columns, ["fuente"]);
    let problem = |kind: &str| {
        view.problems
            .iter()
            .find(|problem| problem.kind == kind)
            .unwrap()
            .clone()
    };
    let bad = problem("bad_rows");
    assert_eq!(bad.count, 3);
    assert!(
        bad.examples[0].starts_with("11: not JSON"),
        "{:?}",
        bad.examples
    );
    assert_eq!(bad.examples[1], "22: not a JSON object");
    assert_eq!(problem("invalid_idioma").count, 14_285);
    assert_eq!(problem("invalid_idioma").examples[0], "7: \"xx\"");
    assert_eq!(problem("empty_answers").count, 100);
    assert_eq!(problem("duplicates").count, 10);
    // Line 5,002: the 5,001st row, after two of the bad lines.
    assert_eq!(problem("duplicates").examples[0], "5004 = 1");

    assert_eq!(
        bars(&view, "idioma"),
        owned(&[
            ("ca", 14_286),
            ("es", 14_286),
            ("es_ar", 14_286),
            ("es_mx", 14_286),
            ("eu", 14_286),
            ("gl", 14_285),
            ("xx", 14_285)
        ])
    );
    assert_eq!(
        bars(&view, "país"),
        owned(&[
            ("Argentina", 25_000),
            ("Colombia", 25_000),
            ("España", 25_000),
            ("México", 25_000)
        ])
    );
    assert_eq!(
        bars(&view, "dominio"),
        owned(&[("salud", 33_334), ("educación", 33_333), ("legal", 33_333)])
    );
    assert_eq!(bars(&view, "tarea"), owned(&[("qa", 100_000)]));

    assert_eq!(
        (view.page, view.pages, view.first_row, view.sample.len()),
        (1, 5_000, 1, 20)
    );
    assert_eq!(view.sample[0][0], "Pregunta 0");
    assert_eq!(view.sample[0].len(), COLUMNS.len());
    let last = corpus.view(1_000_000);
    assert_eq!(
        (last.page, last.first_row, last.sample[19][0].as_str()),
        (5_000, 99_981, "Pregunta 99999")
    );
}

#[test]
fn csv_is_read_with_its_header_and_broken_records_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corpus.csv");
    std::fs::write(&path, "pregunta,entrada,respuesta,idioma,país\n\"¿Qué, dime?\",,Sí,es,Perú\nHola,,Adiós\n¿Y?,,Claro,es_pe,Perú\n").unwrap();
    let view = load(&path).unwrap().view(1);
    assert_eq!(view.rows, 2);
    assert_eq!(view.sample[0][0], "¿Qué, dime?");
    assert_eq!(view.problems[0].count, 1, "{:?}", view.problems);
    assert!(
        view.problems[0].examples[0].starts_with("2: "),
        "{:?}",
        view.problems[0]
    );
    assert_eq!(bars(&view, "país"), owned(&[("Perú", 2)]));
}

#[test]
fn parquet_is_read_with_nulls_as_empty() {
    use std::sync::Arc;

    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corpus.parquet");
    let schema = "message corpus { REQUIRED BYTE_ARRAY pregunta (UTF8); OPTIONAL BYTE_ARRAY entrada (UTF8); REQUIRED BYTE_ARRAY respuesta (UTF8); REQUIRED BYTE_ARRAY idioma (UTF8); }";
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(
        std::fs::File::create(&path).unwrap(),
        Arc::new(parse_message_type(schema).unwrap()),
        properties,
    )
    .unwrap();
    let mut group = writer.next_row_group().unwrap();
    let columns: [(&[&str], Option<&[i16]>); 4] = [
        (&["¿Qué es el ODS 4?", "Resume."], None),
        // `entrada`: null in the first row.
        (&["Un texto."], Some(&[0, 1])),
        (&["Educación de calidad.", ""], None),
        (&["es", "es_xx"], None),
    ];
    for (values, definition_levels) in columns {
        let mut column = group.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = values.iter().map(|value| ByteArray::from(*value)).collect();
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, definition_levels, None)
            .unwrap();
        column.close().unwrap();
    }
    group.close().unwrap();
    writer.close().unwrap();

    let view = load(&path).unwrap().view(1);
    assert_eq!(view.rows, 2);
    assert_eq!(
        view.sample[0][..4],
        ["¿Qué es el ODS 4?", "", "Educación de calidad.", "es"]
    );
    assert_eq!(view.sample[1][..4], ["Resume.", "Un texto.", "", "es_xx"]);
    let count = |kind: &str| {
        view.problems
            .iter()
            .find(|problem| problem.kind == kind)
            .unwrap()
            .count
    };
    assert_eq!(
        (
            count("empty_answers"),
            count("invalid_idioma"),
            count("bad_rows")
        ),
        (1, 1, 0)
    );
    assert_eq!(
        view.missing_columns,
        ["epoca", "nivel", "registro", "dominio", "tarea", "país"]
    );
}

#[test]
fn unreadable_corpus_files_say_what_to_fix() {
    let error = load(std::path::Path::new("no/such/corpus.jsonl"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("no/such/corpus.jsonl") && error.contains("[dataset] file"),
        "{error}"
    );
    let error = load(std::path::Path::new("corpus.xlsx"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("\"xlsx\"") && error.contains("allowed"),
        "{error}"
    );
}
