//! Language varieties as the #Somos600M hackathon labels them (`idioma` codes): Spanish as a
//! whole (`es`) or as spoken in one country (`es_` + the country's ISO 3166 code), and the other
//! languages of Spain and Latin America the hackathon covers.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variety {
    pub code: &'static str,
    pub name_es: &'static str,
    pub name_en: &'static str,
}

const fn variety(code: &'static str, name_es: &'static str, name_en: &'static str) -> Variety {
    Variety {
        code,
        name_es,
        name_en,
    }
}

pub const VARIETIES: &[Variety] = &[
    variety("es", "Español", "Spanish"),
    variety("es_ar", "Español de Argentina", "Argentinian Spanish"),
    variety("es_bo", "Español de Bolivia", "Bolivian Spanish"),
    variety("es_cl", "Español de Chile", "Chilean Spanish"),
    variety("es_co", "Español de Colombia", "Colombian Spanish"),
    variety("es_cr", "Español de Costa Rica", "Costa Rican Spanish"),
    variety("es_cu", "Español de Cuba", "Cuban Spanish"),
    variety(
        "es_do",
        "Español de República Dominicana",
        "Dominican Spanish",
    ),
    variety("es_ec", "Español de Ecuador", "Ecuadorian Spanish"),
    variety("es_es", "Español de España", "Spanish from Spain"),
    variety(
        "es_gq",
        "Español de Guinea Ecuatorial",
        "Equatoguinean Spanish",
    ),
    variety("es_gt", "Español de Guatemala", "Guatemalan Spanish"),
    variety("es_hn", "Español de Honduras", "Honduran Spanish"),
    variety("es_mx", "Español de México", "Mexican Spanish"),
    variety("es_ni", "Español de Nicaragua", "Nicaraguan Spanish"),
    variety("es_pa", "Español de Panamá", "Panamanian Spanish"),
    variety("es_pe", "Español de Perú", "Peruvian Spanish"),
    variety("es_pr", "Español de Puerto Rico", "Puerto Rican Spanish"),
    variety("es_py", "Español de Paraguay", "Paraguayan Spanish"),
    variety("es_sv", "Español de El Salvador", "Salvadoran Spanish"),
    variety("es_us", "Español de Estados Unidos", "US Spanish"),
    variety("es_uy", "Español de Uruguay", "Uruguayan Spanish"),
    variety("es_ve", "Español de Venezuela", "Venezuelan Spanish"),
    variety("ca", "Catalán", "Catalan"),
    variety("eu", "Euskera", "Basque"),
    variety("gl", "Gallego", "Galician"),
    variety("ast", "Asturiano", "Asturian"),
    variety("an", "Aragonés", "Aragonese"),
    variety("oc", "Occitano (aranés)", "Occitan (Aranese)"),
    variety("qu", "Quechua", "Quechua"),
    variety("gn", "Guaraní", "Guarani"),
    variety("ay", "Aimara", "Aymara"),
    variety("nah", "Náhuatl", "Nahuatl"),
    variety("arn", "Mapudungun", "Mapudungun"),
    variety("yua", "Maya yucateco", "Yucatec Maya"),
    variety("lad", "Judeoespañol", "Judeo-Spanish"),
];

pub fn variety_by_code(code: &str) -> Option<&'static Variety> {
    VARIETIES.iter().find(|variety| variety.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_lowercase_and_named() {
        for (index, variety) in VARIETIES.iter().enumerate() {
            assert!(
                variety
                    .code
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                variety.code
            );
            assert!(
                VARIETIES[index + 1..]
                    .iter()
                    .all(|other| other.code != variety.code),
                "{}",
                variety.code
            );
        }
        assert_eq!(
            variety_by_code("es_mx").unwrap().name_es,
            "Español de México"
        );
        assert_eq!(variety_by_code("eu").unwrap().name_en, "Basque");
        assert!(variety_by_code("es-mx").is_none());
    }
}
