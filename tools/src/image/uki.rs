//! Unified kernel images: systemd's EFI stub (`systemd-stub`) with the
//! kernel, the initramfs, the kernel command line and an os-release added
//! as PE sections, so firmware boots the node from one EFI binary.
//!
//! The sections are appended the way systemd's `ukify` lays them out:
//! after the stub's last section, each at the next `SectionAlignment`
//! boundary in memory and `FileAlignment` boundary in the file, in the
//! order `.osrel`, `.cmdline`, `.initrd`, `.linux`. `.linux` goes last
//! because newer stubs run the kernel in place and let its section grow
//! to the kernel's own SizeOfImage; the stub pinned here (252) finds each
//! section by name and hands `.linux` to the firmware's LoadImage, so the
//! order is only for those later stubs.
//!
//! Hand-written rather than run through a tool: the host has none that
//! writes aarch64 PE files. Debian 12's binutils has no `pei-aarch64`
//! target (objcopy and objdump call the arm64 stub "file format not
//! recognized"), and ukify arrives with systemd 253 (and needs Python's
//! pefile). Reading is goblin's; what is written is a 40-byte section
//! header per section plus four header fields.

use anyhow::{bail, ensure, Context, Result};
use goblin::pe::header::Header;
use goblin::pe::section_table::{
    SectionTable, IMAGE_SCN_CNT_CODE, IMAGE_SCN_CNT_INITIALIZED_DATA, IMAGE_SCN_MEM_READ,
};

use crate::host::arch::Arch;

/// What goes into a unified kernel image besides the stub.
pub struct UkiParts<'a> {
    pub os_release: &'a [u8],
    pub cmdline: &'a [u8],
    pub initrd: &'a [u8],
    /// An EFI-stub kernel: a PE image (bzImage on amd64, Image on arm64).
    pub kernel: &'a [u8],
}

/// The EFI architecture suffix in systemd's and the UEFI spec's file names.
fn efi_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x64",
        Arch::Arm64 => "aa64",
    }
}

/// The stub inside Debian's `systemd-boot-efi` package.
pub fn stub_path_in_package(arch: Arch) -> String {
    format!("usr/lib/systemd/boot/efi/linux{}.efi.stub", efi_arch(arch))
}

/// Where firmware looks on removable media when it has no boot entry
/// (UEFI spec 3.5.1.1): `EFI/BOOT/BOOTX64.EFI`, `EFI/BOOT/BOOTAA64.EFI`.
pub fn default_boot_path(arch: Arch) -> String {
    format!("EFI/BOOT/BOOT{}.EFI", efi_arch(arch).to_uppercase())
}

/// systemd-boot inside Debian's `systemd-boot-efi` package.
pub fn boot_manager_path_in_package(arch: Arch) -> String {
    format!(
        "usr/lib/systemd/boot/efi/systemd-boot{}.efi",
        efi_arch(arch)
    )
}

/// The os-release the stub reads the OS's name from.
pub fn os_release(arch: Arch) -> String {
    format!("NAME=kiOS\nID=kios\nPRETTY_NAME=\"kiOS ({arch})\"\n")
}

/// A release's os-release: systemd-boot orders entries of the same ID by
/// IMAGE_VERSION, newest first, and shows PRETTY_NAME in its menu.
pub fn release_os_release(arch: Arch, version: &str) -> String {
    format!(
        "NAME=kiOS\nID=kios\nIMAGE_ID=kios\nIMAGE_VERSION={version}\nVERSION_ID={version}\n\
         PRETTY_NAME=\"kiOS {version} ({arch})\"\n"
    )
}

/// The stub with `parts` added as its `.osrel`, `.cmdline`, `.initrd` and `.linux` sections.
pub fn build_uki(stub: &[u8], parts: &UkiParts) -> Result<Vec<u8>> {
    let kernel_header =
        Header::parse(parts.kernel).context("the kernel is not a PE image (no EFI stub?)")?;
    ensure!(
        kernel_header.optional_header.is_some(),
        "the kernel's PE header has no optional header"
    );
    // No `.initrd` section when there is none: a slot's kernel mounts its root itself.
    let sections: Vec<(&str, &[u8])> = [
        (".osrel", parts.os_release),
        (".cmdline", parts.cmdline),
        (".initrd", parts.initrd),
        (".linux", parts.kernel),
    ]
    .into_iter()
    .filter(|(name, contents)| *name != ".initrd" || !contents.is_empty())
    .collect();
    add_sections(stub, &sections)
        .context("adding the kernel, initramfs and command line to systemd's EFI stub")
}

/// Byte offsets of the fields rewritten, from the PE signature and from
/// the optional header (the same in PE32 and PE32+).
const COFF_NUMBER_OF_SECTIONS: usize = 4 + 2;
const COFF_POINTER_TO_SYMBOL_TABLE: usize = 4 + 8;
const COFF_NUMBER_OF_SYMBOLS: usize = 4 + 12;
const OPTIONAL_HEADER: usize = 4 + 20;
const OPT_SIZE_OF_INITIALIZED_DATA: usize = 8;
const OPT_SIZE_OF_IMAGE: usize = 56;
const OPT_CHECKSUM: usize = 64;
const SECTION_HEADER_BYTES: usize = 40;
/// A COFF symbol table entry.
const SYMBOL_BYTES: usize = 18;

/// Appends `sections` (name, contents) to the PE image `stub`.
pub fn add_sections(stub: &[u8], sections: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let header = Header::parse(stub).context("parsing the stub's PE header")?;
    let optional = header
        .optional_header
        .context("the stub has no PE optional header")?;
    let windows = optional.windows_fields;
    let (section_alignment, file_alignment) = (windows.section_alignment, windows.file_alignment);
    ensure!(
        section_alignment.is_power_of_two() && file_alignment.is_power_of_two(),
        "the stub's alignments ({section_alignment:#x}, {file_alignment:#x}) are not powers of two"
    );
    if optional
        .data_directories
        .get_certificate_table()
        .is_some_and(|table| table.virtual_address != 0)
    {
        bail!("the stub is signed; adding sections would invalidate its signature");
    }

    let pe = header.dos_header.pe_pointer as usize;
    let section_table =
        pe + OPTIONAL_HEADER + usize::from(header.coff_header.size_of_optional_header);
    let mut table_offset = section_table;
    let existing = header
        .coff_header
        .sections(stub, &mut table_offset)
        .context("reading the stub's section table")?;
    let last = existing.last().context("the stub has no sections")?;
    for section in &existing {
        ensure!(
            section.pointer_to_raw_data % file_alignment == 0,
            "the stub's section {} is not at a multiple of its FileAlignment",
            section_name(section)
        );
    }
    let first_raw_data = existing
        .iter()
        .map(|section| section.pointer_to_raw_data as usize)
        .filter(|&offset| offset != 0)
        .min()
        .unwrap_or(stub.len());
    let headers_end = (windows.size_of_headers as usize).min(first_raw_data);
    let new_table_end = table_offset + SECTION_HEADER_BYTES * sections.len();
    ensure!(
        new_table_end <= headers_end,
        "no room in the stub's headers for {} more section headers ({new_table_end:#x} > {headers_end:#x})",
        sections.len()
    );

    let mut image = stub[..without_symbol_table(stub, &header.coff_header)].to_vec();
    if image.len() != stub.len() {
        // A symbol table is not part of an image file; it went with the truncation.
        put_u32(&mut image, pe + COFF_POINTER_TO_SYMBOL_TABLE, 0);
        put_u32(&mut image, pe + COFF_NUMBER_OF_SYMBOLS, 0);
    }

    let mut next_address = round_up(
        u64::from(last.virtual_address) + u64::from(last.virtual_size),
        section_alignment,
    );
    let mut initialized_data = optional.standard_fields.size_of_initialized_data;
    for (index, (name, contents)) in sections.iter().enumerate() {
        ensure!(
            name.len() <= 8,
            "section name {name} is longer than 8 bytes"
        );
        let raw_offset = round_up(image.len() as u64, file_alignment);
        let raw_size = round_up(contents.len() as u64, file_alignment);
        let characteristics = IMAGE_SCN_MEM_READ
            | if *name == ".linux" {
                // Old stubs jump into a kernel's EFI handover entry inside the section.
                IMAGE_SCN_CNT_CODE
            } else {
                IMAGE_SCN_CNT_INITIALIZED_DATA
            };
        let mut section_name_bytes = [0u8; 8];
        section_name_bytes[..name.len()].copy_from_slice(name.as_bytes());
        let section = SectionTable {
            name: section_name_bytes,
            virtual_size: fits_u32(contents.len() as u64, name)?,
            virtual_address: fits_u32(next_address, name)?,
            size_of_raw_data: fits_u32(raw_size, name)?,
            pointer_to_raw_data: fits_u32(raw_offset, name)?,
            characteristics,
            ..SectionTable::default()
        };
        let header_at = table_offset + SECTION_HEADER_BYTES * index;
        image[header_at..header_at + SECTION_HEADER_BYTES]
            .copy_from_slice(&section_header_bytes(&section));

        image.resize(raw_offset as usize, 0);
        image.extend_from_slice(contents);
        image.resize((raw_offset + raw_size) as usize, 0);
        initialized_data += contents.len() as u64;
        next_address = round_up(next_address + contents.len() as u64, section_alignment);
    }

    let section_count = existing.len() + sections.len();
    let section_count = u16::try_from(section_count).context("too many sections")?;
    image[pe + COFF_NUMBER_OF_SECTIONS..pe + COFF_NUMBER_OF_SECTIONS + 2]
        .copy_from_slice(&section_count.to_le_bytes());
    let optional_at = pe + OPTIONAL_HEADER;
    put_u32(
        &mut image,
        optional_at + OPT_SIZE_OF_INITIALIZED_DATA,
        fits_u32(initialized_data, "SizeOfInitializedData")?,
    );
    put_u32(
        &mut image,
        optional_at + OPT_SIZE_OF_IMAGE,
        fits_u32(next_address, "SizeOfImage")?,
    );
    // Firmware does not check an EFI application's checksum; a stale one would be wrong.
    put_u32(&mut image, optional_at + OPT_CHECKSUM, 0);
    Ok(image)
}

/// The stub's length without a COFF symbol table (and its string table)
/// at its very end; old stubs carry one, an image should not.
fn without_symbol_table(stub: &[u8], coff: &goblin::pe::header::CoffHeader) -> usize {
    let start = coff.pointer_to_symbol_table as usize;
    if start == 0 {
        return stub.len();
    }
    let strings = start + SYMBOL_BYTES * coff.number_of_symbol_table as usize;
    let string_table_bytes = stub.get(strings..strings + 4).map_or(0, |size| {
        u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize
    });
    if strings + string_table_bytes == stub.len() {
        start
    } else {
        stub.len()
    }
}

fn section_header_bytes(section: &SectionTable) -> [u8; SECTION_HEADER_BYTES] {
    let mut bytes = [0u8; SECTION_HEADER_BYTES];
    bytes[..8].copy_from_slice(&section.name);
    let fields = [
        section.virtual_size,
        section.virtual_address,
        section.size_of_raw_data,
        section.pointer_to_raw_data,
        section.pointer_to_relocations,
        section.pointer_to_linenumbers,
    ];
    for (index, field) in fields.iter().enumerate() {
        bytes[8 + 4 * index..12 + 4 * index].copy_from_slice(&field.to_le_bytes());
    }
    bytes[32..34].copy_from_slice(&section.number_of_relocations.to_le_bytes());
    bytes[34..36].copy_from_slice(&section.number_of_linenumbers.to_le_bytes());
    bytes[36..40].copy_from_slice(&section.characteristics.to_le_bytes());
    bytes
}

fn section_name(section: &SectionTable) -> String {
    String::from_utf8_lossy(&section.name)
        .trim_end_matches('\0')
        .to_string()
}

fn put_u32(image: &mut [u8], at: usize, value: u32) {
    image[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn round_up(value: u64, alignment: u32) -> u64 {
    value.div_ceil(u64::from(alignment)) * u64::from(alignment)
}

fn fits_u32(value: u64, what: &str) -> Result<u32> {
    u32::try_from(value).with_context(|| format!("{what} ({value} bytes) overflows a PE field"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ EFI application: headers, one `.text` section, and
    /// a symbol table at the end like Debian's amd64 stub has.
    fn tiny_stub() -> Vec<u8> {
        let mut image = vec![0u8; 0x400];
        image[..2].copy_from_slice(b"MZ");
        image[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        let pe = 0x80;
        image[pe..pe + 4].copy_from_slice(b"PE\0\0");
        image[pe + 4..pe + 6].copy_from_slice(&0x8664u16.to_le_bytes());
        image[pe + 6..pe + 8].copy_from_slice(&1u16.to_le_bytes());
        image[pe + 8 + 4..pe + 8 + 8].copy_from_slice(&0x600u32.to_le_bytes());
        image[pe + 8 + 8..pe + 8 + 12].copy_from_slice(&2u32.to_le_bytes());
        image[pe + 20..pe + 22].copy_from_slice(&240u16.to_le_bytes());
        image[pe + 22..pe + 24].copy_from_slice(&0x206u16.to_le_bytes());
        let opt = pe + 24;
        image[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        image[opt + 8..opt + 12].copy_from_slice(&0x200u32.to_le_bytes());
        image[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        image[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes());
        image[opt + 56..opt + 60].copy_from_slice(&0x2000u32.to_le_bytes());
        image[opt + 60..opt + 64].copy_from_slice(&0x400u32.to_le_bytes());
        image[opt + 64..opt + 68].copy_from_slice(&0xdeadu32.to_le_bytes());
        image[opt + 68..opt + 70].copy_from_slice(&10u16.to_le_bytes());
        image[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let text = SectionTable {
            name: *b".text\0\0\0",
            virtual_size: 0x123,
            virtual_address: 0x1000,
            size_of_raw_data: 0x200,
            pointer_to_raw_data: 0x400,
            characteristics: 0x6000_0020,
            ..SectionTable::default()
        };
        let table = opt + 240;
        image[table..table + 40].copy_from_slice(&section_header_bytes(&text));
        image.resize(0x600, 0xcc);
        // Two symbols and a 4-byte string table.
        image.extend_from_slice(&[0x11; 36]);
        image.extend_from_slice(&4u32.to_le_bytes());
        image
    }

    fn sections_of(image: &[u8]) -> Vec<SectionTable> {
        let header = Header::parse(image).unwrap();
        let pe = header.dos_header.pe_pointer as usize;
        let mut offset = pe + 24 + usize::from(header.coff_header.size_of_optional_header);
        header.coff_header.sections(image, &mut offset).unwrap()
    }

    #[test]
    fn sections_follow_the_stub_aligned_like_ukify_lays_them_out() {
        let stub = tiny_stub();
        let image = add_sections(
            &stub,
            &[(".cmdline", b"console=ttyS0"), (".linux", &[7u8; 0x1234])],
        )
        .unwrap();
        let sections = sections_of(&image);
        let names: Vec<String> = sections.iter().map(section_name).collect();
        assert_eq!(names, [".text", ".cmdline", ".linux"]);

        let cmdline = &sections[1];
        assert_eq!(
            cmdline.virtual_address, 0x2000,
            "next SectionAlignment after .text"
        );
        assert_eq!(cmdline.virtual_size, 13);
        assert_eq!(
            cmdline.pointer_to_raw_data, 0x600,
            "the symbol table was dropped"
        );
        assert_eq!(cmdline.size_of_raw_data, 0x200);
        assert_eq!(
            &image[0x600..0x600 + 13],
            b"console=ttyS0",
            "contents at the raw offset"
        );
        assert_eq!(
            cmdline.characteristics,
            IMAGE_SCN_MEM_READ | IMAGE_SCN_CNT_INITIALIZED_DATA
        );

        let linux = &sections[2];
        assert_eq!(linux.virtual_address, 0x3000);
        assert_eq!(linux.pointer_to_raw_data, 0x800);
        assert_eq!(linux.size_of_raw_data, 0x1400);
        assert_eq!(
            linux.characteristics,
            IMAGE_SCN_MEM_READ | IMAGE_SCN_CNT_CODE
        );
        assert_eq!(image.len(), 0x800 + 0x1400);

        let header = Header::parse(&image).unwrap();
        assert_eq!(header.coff_header.number_of_sections, 3);
        assert_eq!(header.coff_header.pointer_to_symbol_table, 0);
        assert_eq!(header.coff_header.number_of_symbol_table, 0);
        let optional = header.optional_header.unwrap();
        assert_eq!(optional.windows_fields.size_of_image, 0x5000);
        assert_eq!(optional.windows_fields.check_sum, 0);
        assert_eq!(
            optional.standard_fields.size_of_initialized_data,
            0x200 + 13 + 0x1234
        );
    }

    #[test]
    fn a_stub_without_header_room_or_signed_is_refused() {
        let mut stub = tiny_stub();
        // SizeOfHeaders just past the one section header: no room for another.
        let opt = 0x80 + 24;
        stub[opt + 60..opt + 64].copy_from_slice(&0x1a0u32.to_le_bytes());
        let error = add_sections(&stub, &[(".osrel", b"ID=kios")]).unwrap_err();
        assert!(error.to_string().contains("no room"), "{error}");

        let mut signed = tiny_stub();
        let security_directory = opt + 112 + 8 * 4;
        signed[security_directory..security_directory + 8]
            .copy_from_slice(&[0, 0x10, 0, 0, 0x10, 0, 0, 0]);
        let error = add_sections(&signed, &[(".osrel", b"ID=kios")]).unwrap_err();
        assert!(error.to_string().contains("signed"), "{error}");
    }

    #[test]
    fn a_kernel_that_is_not_a_pe_image_is_refused() {
        let error = build_uki(
            &tiny_stub(),
            &UkiParts {
                os_release: b"ID=kios\n",
                cmdline: b"console=ttyS0",
                initrd: b"070701",
                kernel: b"\x1f\x8b\x08 gzip, not PE",
            },
        )
        .unwrap_err();
        assert!(error.to_string().contains("not a PE image"), "{error}");
    }

    #[test]
    fn efi_file_names_per_arch() {
        assert_eq!(default_boot_path(Arch::Amd64), "EFI/BOOT/BOOTX64.EFI");
        assert_eq!(default_boot_path(Arch::Arm64), "EFI/BOOT/BOOTAA64.EFI");
        assert_eq!(
            stub_path_in_package(Arch::Arm64),
            "usr/lib/systemd/boot/efi/linuxaa64.efi.stub"
        );
    }
}
