//! Language varieties as the #Somos600M hackathon labels them (`idioma` codes): Spanish and
//! (since the 2025 edition) Portuguese as a whole (`es`, `pt`) or as spoken in one country
//! (`es_`/`pt_` + the country's ISO 3166 code), and the co-official and other languages of the
//! Iberian Peninsula and Latin America the editions cover.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variety {
    pub code: &'static str,
    pub name_es: &'static str,
    pub name_en: &'static str,
    pub name_pt: &'static str,
}

const fn variety(
    code: &'static str,
    name_es: &'static str,
    name_en: &'static str,
    name_pt: &'static str,
) -> Variety {
    Variety {
        code,
        name_es,
        name_en,
        name_pt,
    }
}

pub const VARIETIES: &[Variety] = &[
    variety("es", "Español", "Spanish", "Espanhol"),
    variety(
        "es_ar",
        "Español de Argentina",
        "Argentinian Spanish",
        "Espanhol da Argentina",
    ),
    variety(
        "es_bo",
        "Español de Bolivia",
        "Bolivian Spanish",
        "Espanhol da Bolívia",
    ),
    variety(
        "es_cl",
        "Español de Chile",
        "Chilean Spanish",
        "Espanhol do Chile",
    ),
    variety(
        "es_co",
        "Español de Colombia",
        "Colombian Spanish",
        "Espanhol da Colômbia",
    ),
    variety(
        "es_cr",
        "Español de Costa Rica",
        "Costa Rican Spanish",
        "Espanhol da Costa Rica",
    ),
    variety(
        "es_cu",
        "Español de Cuba",
        "Cuban Spanish",
        "Espanhol de Cuba",
    ),
    variety(
        "es_do",
        "Español de República Dominicana",
        "Dominican Spanish",
        "Espanhol da República Dominicana",
    ),
    variety(
        "es_ec",
        "Español de Ecuador",
        "Ecuadorian Spanish",
        "Espanhol do Equador",
    ),
    variety(
        "es_es",
        "Español de España",
        "Spanish from Spain",
        "Espanhol da Espanha",
    ),
    variety(
        "es_gq",
        "Español de Guinea Ecuatorial",
        "Equatoguinean Spanish",
        "Espanhol da Guiné Equatorial",
    ),
    variety(
        "es_gt",
        "Español de Guatemala",
        "Guatemalan Spanish",
        "Espanhol da Guatemala",
    ),
    variety(
        "es_hn",
        "Español de Honduras",
        "Honduran Spanish",
        "Espanhol de Honduras",
    ),
    variety(
        "es_mx",
        "Español de México",
        "Mexican Spanish",
        "Espanhol do México",
    ),
    variety(
        "es_ni",
        "Español de Nicaragua",
        "Nicaraguan Spanish",
        "Espanhol da Nicarágua",
    ),
    variety(
        "es_pa",
        "Español de Panamá",
        "Panamanian Spanish",
        "Espanhol do Panamá",
    ),
    variety(
        "es_pe",
        "Español de Perú",
        "Peruvian Spanish",
        "Espanhol do Peru",
    ),
    variety(
        "es_pr",
        "Español de Puerto Rico",
        "Puerto Rican Spanish",
        "Espanhol de Porto Rico",
    ),
    variety(
        "es_py",
        "Español de Paraguay",
        "Paraguayan Spanish",
        "Espanhol do Paraguai",
    ),
    variety(
        "es_sv",
        "Español de El Salvador",
        "Salvadoran Spanish",
        "Espanhol de El Salvador",
    ),
    variety(
        "es_us",
        "Español de Estados Unidos",
        "US Spanish",
        "Espanhol dos Estados Unidos",
    ),
    variety(
        "es_uy",
        "Español de Uruguay",
        "Uruguayan Spanish",
        "Espanhol do Uruguai",
    ),
    variety(
        "es_ve",
        "Español de Venezuela",
        "Venezuelan Spanish",
        "Espanhol da Venezuela",
    ),
    variety("pt", "Portugués", "Portuguese", "Português"),
    variety(
        "pt_br",
        "Portugués de Brasil",
        "Brazilian Portuguese",
        "Português do Brasil",
    ),
    variety(
        "pt_pt",
        "Portugués de Portugal",
        "European Portuguese",
        "Português de Portugal",
    ),
    variety(
        "pt_ao",
        "Portugués de Angola",
        "Angolan Portuguese",
        "Português de Angola",
    ),
    variety(
        "pt_mz",
        "Portugués de Mozambique",
        "Mozambican Portuguese",
        "Português de Moçambique",
    ),
    variety(
        "pt_cv",
        "Portugués de Cabo Verde",
        "Cape Verdean Portuguese",
        "Português de Cabo Verde",
    ),
    variety(
        "pt_gw",
        "Portugués de Guinea-Bisáu",
        "Bissau-Guinean Portuguese",
        "Português da Guiné-Bissau",
    ),
    variety(
        "pt_st",
        "Portugués de Santo Tomé y Príncipe",
        "Santomean Portuguese",
        "Português de São Tomé e Príncipe",
    ),
    variety(
        "pt_tl",
        "Portugués de Timor Oriental",
        "East Timorese Portuguese",
        "Português de Timor-Leste",
    ),
    variety("ca", "Catalán", "Catalan", "Catalão"),
    variety("eu", "Euskera", "Basque", "Basco"),
    variety("gl", "Gallego", "Galician", "Galego"),
    variety("ast", "Asturiano", "Asturian", "Asturiano"),
    variety("an", "Aragonés", "Aragonese", "Aragonês"),
    variety(
        "oc",
        "Occitano (aranés)",
        "Occitan (Aranese)",
        "Occitano (aranês)",
    ),
    variety("mwl", "Mirandés", "Mirandese", "Mirandês"),
    variety("qu", "Quechua", "Quechua", "Quéchua"),
    variety("gn", "Guaraní", "Guarani", "Guarani"),
    variety("ay", "Aimara", "Aymara", "Aimará"),
    variety("nah", "Náhuatl", "Nahuatl", "Náuatle"),
    variety("arn", "Mapudungun", "Mapudungun", "Mapudungun"),
    variety("yua", "Maya yucateco", "Yucatec Maya", "Maia iucateque"),
    variety("lad", "Judeoespañol", "Judeo-Spanish", "Judeu-espanhol"),
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
