//! The 17 UN Sustainable Development Goals (Objetivos de Desarrollo Sostenible, ODS) with their
//! official names in Spanish, English and Portuguese and their official colours, as the UN's communications
//! materials publish them. Teams only write the numbers in `space.toml`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Goal {
    pub number: u8,
    pub name_es: &'static str,
    pub name_en: &'static str,
    /// As the UN's Brazilian office publishes them.
    pub name_pt: &'static str,
    /// Official colour as `#RRGGBB`.
    pub color: &'static str,
}

pub const GOALS: [Goal; 17] = [
    Goal {
        number: 1,
        name_es: "Fin de la pobreza",
        name_en: "No Poverty",
        name_pt: "Erradicação da pobreza",
        color: "#E5243B",
    },
    Goal {
        number: 2,
        name_es: "Hambre cero",
        name_en: "Zero Hunger",
        name_pt: "Fome zero e agricultura sustentável",
        color: "#DDA63A",
    },
    Goal {
        number: 3,
        name_es: "Salud y bienestar",
        name_en: "Good Health and Well-being",
        name_pt: "Saúde e bem-estar",
        color: "#4C9F38",
    },
    Goal {
        number: 4,
        name_es: "Educación de calidad",
        name_en: "Quality Education",
        name_pt: "Educação de qualidade",
        color: "#C5192D",
    },
    Goal {
        number: 5,
        name_es: "Igualdad de género",
        name_en: "Gender Equality",
        name_pt: "Igualdade de gênero",
        color: "#FF3A21",
    },
    Goal {
        number: 6,
        name_es: "Agua limpia y saneamiento",
        name_en: "Clean Water and Sanitation",
        name_pt: "Água potável e saneamento",
        color: "#26BDE2",
    },
    Goal {
        number: 7,
        name_es: "Energía asequible y no contaminante",
        name_en: "Affordable and Clean Energy",
        name_pt: "Energia limpa e acessível",
        color: "#FCC30B",
    },
    Goal {
        number: 8,
        name_es: "Trabajo decente y crecimiento económico",
        name_en: "Decent Work and Economic Growth",
        name_pt: "Trabalho decente e crescimento econômico",
        color: "#A21942",
    },
    Goal {
        number: 9,
        name_es: "Industria, innovación e infraestructura",
        name_en: "Industry, Innovation and Infrastructure",
        name_pt: "Indústria, inovação e infraestrutura",
        color: "#FD6925",
    },
    Goal {
        number: 10,
        name_es: "Reducción de las desigualdades",
        name_en: "Reduced Inequalities",
        name_pt: "Redução das desigualdades",
        color: "#DD1367",
    },
    Goal {
        number: 11,
        name_es: "Ciudades y comunidades sostenibles",
        name_en: "Sustainable Cities and Communities",
        name_pt: "Cidades e comunidades sustentáveis",
        color: "#FD9D24",
    },
    Goal {
        number: 12,
        name_es: "Producción y consumo responsables",
        name_en: "Responsible Consumption and Production",
        name_pt: "Consumo e produção responsáveis",
        color: "#BF8B2E",
    },
    Goal {
        number: 13,
        name_es: "Acción por el clima",
        name_en: "Climate Action",
        name_pt: "Ação contra a mudança global do clima",
        color: "#3F7E44",
    },
    Goal {
        number: 14,
        name_es: "Vida submarina",
        name_en: "Life Below Water",
        name_pt: "Vida na água",
        color: "#0A97D9",
    },
    Goal {
        number: 15,
        name_es: "Vida de ecosistemas terrestres",
        name_en: "Life on Land",
        name_pt: "Vida terrestre",
        color: "#56C02B",
    },
    Goal {
        number: 16,
        name_es: "Paz, justicia e instituciones sólidas",
        name_en: "Peace, Justice and Strong Institutions",
        name_pt: "Paz, justiça e instituições eficazes",
        color: "#00689D",
    },
    Goal {
        number: 17,
        name_es: "Alianzas para lograr los objetivos",
        name_en: "Partnerships for the Goals",
        name_pt: "Parcerias e meios de implementação",
        color: "#19486A",
    },
];

pub fn goal(number: u8) -> Option<&'static Goal> {
    GOALS.iter().find(|goal| goal.number == number)
}

impl Goal {
    /// Black or white, whichever reads better on the goal's colour (WCAG relative luminance):
    /// several official colours (2, 6, 7, 11, 15) are too light for white text.
    pub fn text_color(&self) -> &'static str {
        let luminance = relative_luminance(self.color);
        let contrast_with_white = 1.05 / (luminance + 0.05);
        let contrast_with_black = (luminance + 0.05) / 0.05;
        if contrast_with_white >= contrast_with_black {
            "#FFFFFF"
        } else {
            "#000000"
        }
    }
}

/// WCAG 2 relative luminance of an `#RRGGBB` colour.
pub fn relative_luminance(hex: &str) -> f64 {
    let channel = |range: std::ops::Range<usize>| {
        let value = u8::from_str_radix(&hex[range], 16).unwrap_or(0) as f64 / 255.0;
        if value <= 0.03928 {
            value / 12.92
        } else {
            ((value + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(1..3) + 0.7152 * channel(3..5) + 0.0722 * channel(5..7)
}

/// WCAG contrast ratio between two `#RRGGBB` colours (1 to 21).
pub fn contrast_ratio(a: &str, b: &str) -> f64 {
    let (la, lb) = (relative_luminance(a), relative_luminance(b));
    let (light, dark) = if la > lb { (la, lb) } else { (lb, la) };
    (light + 0.05) / (dark + 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_seventeen_goals_in_order_with_official_data() {
        for (index, goal) in GOALS.iter().enumerate() {
            assert_eq!(goal.number as usize, index + 1);
            assert!(
                !goal.name_es.is_empty() && !goal.name_en.is_empty() && !goal.name_pt.is_empty()
            );
            assert_eq!(
                goal.color.len(),
                7,
                "goal {} colour {}",
                goal.number,
                goal.color
            );
            assert!(goal.color[1..].chars().all(|c| c.is_ascii_hexdigit()));
        }
        assert_eq!(goal(4).unwrap().name_es, "Educación de calidad");
        assert_eq!(goal(13).unwrap().name_en, "Climate Action");
        assert_eq!(goal(17).unwrap().color, "#19486A");
        assert!(goal(0).is_none() && goal(18).is_none());
    }

    #[test]
    fn every_badge_text_meets_large_text_contrast() {
        // Badge numbers are large and bold: WCAG AA asks 3:1 for large text.
        for goal in &GOALS {
            let ratio = contrast_ratio(goal.color, goal.text_color());
            assert!(ratio >= 3.0, "goal {} has contrast {ratio:.2}", goal.number);
        }
        assert_eq!(
            goal(7).unwrap().text_color(),
            "#000000",
            "yellow takes black text"
        );
        assert_eq!(
            goal(17).unwrap().text_color(),
            "#FFFFFF",
            "navy takes white text"
        );
    }
}
